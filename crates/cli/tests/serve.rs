//! `autocaption serve` end to end: the real binary on a loopback port, spoken to over raw
//! TCP so that hostile clients (slow, oversized, truncated, flooding) can be played exactly.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use tempfile::TempDir;

mod common;

fn bin() -> Command {
    Command::cargo_bin("autocaption").unwrap()
}

/// The shared small model with its own encoder, and its images.
fn model() -> &'static (PathBuf, PathBuf) {
    common::concept_model()
}

fn photo(n: usize) -> PathBuf {
    model().1.join(format!("synth_{n:05}.png"))
}

/// A running `autocaption serve`, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(extra: &[&str]) -> Self {
        let mut child = Process::new(assert_cmd::cargo::cargo_bin("autocaption"))
            .args(["serve", "--addr", "127.0.0.1:0", "--model"])
            .arg(&model().0)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let l = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("listening on http://") {
                    let addr = rest.split_whitespace().next().unwrap().to_string();
                    let _ = tx.send(addr);
                }
                l.lock().unwrap().push(line);
            }
        });
        let addr: SocketAddr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server says where it listens")
            .parse()
            .unwrap();
        let s = Self { child, addr, log };
        let until = Instant::now() + Duration::from_secs(60);
        while s.get("/readyz").status != 200 {
            assert!(
                Instant::now() < until,
                "not ready: {:?}",
                s.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    }

    fn request(&self, head: &str, body: &[u8]) -> Reply {
        let mut s = self.connect();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        read_reply(&mut s)
    }

    fn get(&self, path: &str) -> Reply {
        self.request(
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            b"",
        )
    }

    fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Reply {
        self.request(&post_head(path, content_type, body.len()), body)
    }

    /// Peak resident memory of the server so far, in MB.
    fn peak_rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post_head(path: &str, content_type: &str, len: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\r\n"
    )
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// Reads one HTTP/1.1 response (Content-Length or chunked) from `s`; status 0 when the
/// server closed the connection without one.
fn read_reply(s: &mut TcpStream) -> Reply {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return Reply {
            status: 0,
            headers: vec![],
            body: vec![],
        };
    }
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().unwrap());
    let mut body = Vec::new();
    match len {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body).unwrap();
        }
        None => loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        },
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "autocaption-test-boundary";
    let mut body = Vec::new();
    for (name, data) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn the_api_end_to_end() {
    let server = Server::start(&[]);
    assert_eq!(server.get("/healthz").json()["status"], "ok");
    let ready = server.get("/readyz").json();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["encoder"], "concept_cnn");

    // The same caption and score as `autocaption caption` on the same photo.
    let png = std::fs::read(photo(0)).unwrap();
    let r = server.post("/v1/captions?alternatives=true", "image/png", &png);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let a = r.json();
    let cli = bin()
        .args(["caption", "--json", "--alternatives", "--model"])
        .arg(&model().0)
        .arg(photo(0))
        .assert()
        .success();
    let line: serde_json::Value = serde_json::from_slice(&cli.get_output().stdout).unwrap();
    assert_eq!(a["caption"], line["caption"]);
    assert_eq!(a["score"], line["score"]);
    assert_eq!(a["alternatives"], line["alternatives"]);
    assert!(!a["caption"].as_str().unwrap().is_empty());
    let t = &a["timings"];
    for k in [
        "read_ms",
        "decode_ms",
        "queue_ms",
        "encode_ms",
        "caption_ms",
        "total_ms",
    ] {
        assert!(t[k].as_f64().unwrap() >= 0.0, "{k}");
    }
    assert_eq!(t["batch"], 1);

    // Options: greedy, and a cap on the words.
    let g = server
        .post(
            "/v1/captions?beam=1&max_words=2",
            "application/octet-stream",
            &png,
        )
        .json();
    assert!(g["caption"].as_str().unwrap().split(' ').count() <= 2);
    assert!(g.get("alternatives").is_none());

    // Several photos as multipart: one result a part, in order, a bad part named.
    let png1 = std::fs::read(photo(1)).unwrap();
    let (ct, body) = multipart(&[
        ("a.png", &png),
        ("b.png", &png1),
        ("c.png", b"not an image"),
    ]);
    let m = server.post("/v1/captions", &ct, &body);
    assert_eq!(m.status, 200);
    let results = m.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["name"], "a.png");
    assert_eq!(results[0]["caption"], a["caption"]);
    assert_eq!(results[1]["name"], "b.png");
    assert_eq!(results[2]["error"]["status"], 400);
    assert!(results[2]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("c.png"));

    // Metrics, the OpenAPI document, the page, and JSON errors for unknown routes.
    let metrics = String::from_utf8(server.get("/metrics").body).unwrap();
    for needle in [
        "autocaption_requests_total{route=\"/v1/captions\",status=\"200\"} 3",
        "# TYPE autocaption_request_duration_seconds histogram",
        "autocaption_batch_size_bucket{le=\"+Inf\"}",
        "autocaption_queue_depth 0",
        "autocaption_ready 1",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
    let spec = server.get("/openapi.json").json();
    assert_eq!(spec["openapi"], "3.0.3");
    assert!(spec["paths"]["/v1/captions"]["post"]["responses"]["413"].is_object());
    let page = server.get("/");
    assert!(String::from_utf8_lossy(&page.body).contains("<input id=\"file\" type=\"file\""));
    let nf = server.get("/nope");
    assert_eq!((nf.status, nf.error_code().as_str()), (404, "not_found"));
    let na = server.get("/v1/captions");
    assert_eq!(
        (na.status, na.error_code().as_str()),
        (405, "method_not_allowed")
    );
}

/// A PNG whose header claims `w`×`h` pixels, with no pixel data to speak of.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, 1, 1);
    enc.set_color(png::ColorType::Rgb);
    enc.write_header()
        .unwrap()
        .write_image_data(&[0, 0, 0])
        .unwrap();
    // Rewrite IHDR's width and height, and its CRC.
    out[16..20].copy_from_slice(&w.to_be_bytes());
    out[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&out[12..29]);
    out[29..33].copy_from_slice(&crc.to_be_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn hostile_requests_get_their_status_and_the_server_stays_up() {
    let server = Server::start(&[
        "--max-body-bytes",
        "200000",
        "--max-pixels",
        "1000000",
        "--read-timeout-ms",
        "800",
        "--queue",
        "3",
    ]);
    let png = std::fs::read(photo(2)).unwrap();
    let expect = |r: Reply, status: u16, code: &str, needle: &str| {
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.error_code(), code);
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
        assert_eq!(r.json()["error"]["status"], status);
    };
    // A truncated image, garbage, an empty body: 400 with the decoder's reason.
    expect(
        server.post("/v1/captions", "image/png", &png[..png.len() / 2]),
        400,
        "bad_image",
        "cannot decode",
    );
    expect(
        server.post("/v1/captions", "image/jpeg", b"\xff\xd8\xff garbage"),
        400,
        "bad_image",
        "cannot decode",
    );
    expect(
        server.post("/v1/captions", "image/png", b""),
        400,
        "bad_image",
        "empty",
    );
    // A decompression bomb: refused from its header.
    expect(
        server.post("/v1/captions", "image/png", &png_claiming(100_000, 100_000)),
        413,
        "too_large",
        "100000×100000 pixels is more than the limit of 1000000",
    );
    // Oversized bodies: declared, and streamed without a length.
    expect(
        server.post("/v1/captions", "image/png", &vec![0u8; 300_000]),
        413,
        "too_large",
        "limit of 200000 bytes",
    );
    let mut s = server.connect();
    s.write_all(b"POST /v1/captions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    for _ in 0..30 {
        let chunk = vec![7u8; 10_000];
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .is_err()
            || s.write_all(&chunk).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    expect(
        read_reply(&mut s),
        413,
        "too_large",
        "limit of 200000 bytes",
    );
    // The wrong content type, and none.
    expect(
        server.post("/v1/captions", "text/plain", &png),
        415,
        "unsupported_media_type",
        "text/plain",
    );
    expect(
        server.request(
            &format!("POST /v1/captions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", png.len()),
            &png,
        ),
        415,
        "unsupported_media_type",
        "no Content-Type",
    );
    // Bad options.
    expect(
        server.post("/v1/captions?beam=0", "image/png", &png),
        422,
        "bad_option",
        "beam",
    );
    expect(
        server.post("/v1/captions?beam=99", "image/png", &png),
        422,
        "bad_option",
        "from 1 to 16",
    );
    expect(
        server.post("/v1/captions?colour=red", "image/png", &png),
        422,
        "bad_option",
        "unknown option",
    );
    // A body that trickles in slower than the read timeout: 408.
    let mut slow = server.connect();
    slow.write_all(post_head("/v1/captions", "image/png", png.len()).as_bytes())
        .unwrap();
    let t = Instant::now();
    for b in png.iter().take(20) {
        if slow.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    expect(read_reply(&mut slow), 408, "read_timeout", "800 ms");
    assert!(t.elapsed() < Duration::from_secs(10));
    // Headers that never end: the connection is closed.
    let mut loris = server.connect();
    loris
        .write_all(b"POST /v1/captions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    let closed_in = Instant::now();
    let _ = loris.read(&mut buf);
    assert!(closed_in.elapsed() < Duration::from_secs(20));

    // The queue: three admitted requests whose bodies are still coming hold every place,
    // so the fourth gets 503 with Retry-After before its body is read.
    let held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = server.connect();
            s.write_all(post_head("/v1/captions", "image/png", png.len()).as_bytes())
                .unwrap();
            s.write_all(&png[..10]).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let full = server.post("/v1/captions", "image/png", &png);
    assert_eq!(full.header("retry-after"), Some("1"));
    expect(full, 503, "queue_full", "3 requests");
    for mut s in held {
        s.write_all(&png[10..]).unwrap();
        assert_eq!(read_reply(&mut s).status, 200);
    }

    // A flood far past the queue: every request gets 200 or 503, and the server answers after.
    let addr = server.addr;
    let png = Arc::new(png);
    let statuses: Vec<u16> = (0..48)
        .map(|_| {
            let png = png.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                s.write_all(post_head("/v1/captions", "image/png", png.len()).as_bytes())
                    .unwrap();
                s.write_all(&png).unwrap();
                read_reply(&mut s).status
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let busy = statuses.iter().filter(|&&s| s == 503).count();
    assert_eq!(ok + busy, statuses.len(), "{statuses:?}");
    assert!(ok >= 3, "{statuses:?}");
    assert_eq!(server.get("/healthz").status, 200);
    let r = server.post("/v1/captions", "image/png", &png);
    assert_eq!(r.status, 200);
    let metrics = String::from_utf8(server.get("/metrics").body).unwrap();
    assert!(metrics.contains("autocaption_requests_total{route=\"/v1/captions\",status=\"503\"}"));
    let rss = server.peak_rss_mb();
    eprintln!("flood of 48: {ok} answered 200, {busy} answered 503; server peak RSS {rss:.0} MB");
    assert!(rss < 1024.0, "peak RSS {rss} MB");
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits() {
    let mut server = Server::start(&[]);
    let png = std::fs::read(photo(3)).unwrap();
    // A request whose body is half sent when the signal comes.
    let mut s = server.connect();
    s.write_all(post_head("/v1/captions", "image/png", png.len()).as_bytes())
        .unwrap();
    s.write_all(&png[..png.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = server.child.id().to_string();
    assert!(Process::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(300));
    // New connections are no longer taken; the one in flight is answered.
    assert!(TcpStream::connect(server.addr).is_err());
    s.write_all(&png[png.len() / 2..]).unwrap();
    let r = read_reply(&mut s);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(!r.json()["caption"].as_str().unwrap().is_empty());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        log.contains("shutting down: finishing requests in flight"),
        "{log}"
    );
}

#[test]
fn bad_settings_and_models_are_refused_before_listening() {
    let t = TempDir::new().unwrap();
    bin()
        .args(["serve", "--model"])
        .arg(t.path())
        .assert()
        .failure()
        .stderr(predicates::str::contains("not a model directory"));
    for (flag, value, needle) in [
        (
            "--max-batch",
            "0",
            "--max-batch must be from 1 to 256, got 0",
        ),
        ("--queue", "0", "--queue must be from 1"),
        (
            "--max-pixels",
            "100000000000",
            "--max-pixels must be from 1 to 89478485",
        ),
        ("--beam", "40", "--beam 40 is wider than --max-beam 16"),
    ] {
        bin()
            .args(["serve", "--model"])
            .arg(t.path())
            .args([flag, value])
            .assert()
            .failure()
            .stderr(predicates::str::contains(needle));
    }
}

/// Where the browser test leaves its screenshot.
fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png")
}

fn chromium() -> Option<PathBuf> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// The page in headless Chromium, driven over the DevTools protocol: a photo set on the file
/// input is uploaded, and its caption appears on the page.
#[test]
fn the_page_uploads_a_photo_and_shows_its_caption_in_chromium() {
    let Some(chrome) = chromium() else {
        eprintln!("skipped: no Chromium (apt-get install chromium)");
        return;
    };
    let server = Server::start(&[]);
    let profile = TempDir::new().unwrap();
    let mut browser = Process::new(chrome)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
            "--window-size=900,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = browser.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let result = std::panic::catch_unwind(|| {
        let browser_ws = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("DevTools URL");
        let mut cdp = Cdp::connect(&browser_ws);
        let target = cdp.call(
            "Target.createTarget",
            serde_json::json!({"url": "about:blank"}),
        );
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = cdp.call(
            "Target.attachToTarget",
            serde_json::json!({"targetId": target_id, "flatten": true}),
        );
        cdp.session = Some(attached["sessionId"].as_str().unwrap().to_string());
        cdp.call("Page.enable", serde_json::json!({}));
        cdp.call(
            "Page.navigate",
            serde_json::json!({"url": format!("http://{}/", server.addr)}),
        );
        let eval = |cdp: &mut Cdp, js: &str| -> serde_json::Value {
            cdp.call(
                "Runtime.evaluate",
                serde_json::json!({"expression": js, "returnByValue": true}),
            )["result"]["value"]
                .clone()
        };
        let until = Instant::now() + Duration::from_secs(30);
        while eval(&mut cdp, "document.readyState") != "complete"
            || eval(&mut cdp, "!!document.getElementById('file')") != true
        {
            assert!(Instant::now() < until, "the page did not load");
            std::thread::sleep(Duration::from_millis(50));
        }
        let doc = cdp.call("DOM.getDocument", serde_json::json!({}));
        let input = cdp.call(
            "DOM.querySelector",
            serde_json::json!({"nodeId": doc["root"]["nodeId"], "selector": "#file"}),
        );
        cdp.call(
            "DOM.setFileInputFiles",
            serde_json::json!({"nodeId": input["nodeId"], "files": [photo(5).to_str().unwrap()]}),
        );
        let until = Instant::now() + Duration::from_secs(30);
        let caption = loop {
            let c = eval(&mut cdp, "document.getElementById('caption').textContent");
            let c = c.as_str().unwrap_or("").to_string();
            if !c.is_empty() && c != "Captioning…" {
                break c;
            }
            let err = eval(&mut cdp, "document.getElementById('error').textContent");
            assert!(
                err.as_str().unwrap_or("").is_empty(),
                "the page shows an error: {err}"
            );
            assert!(Instant::now() < until, "no caption appeared");
            std::thread::sleep(Duration::from_millis(50));
        };
        // The page shows what `caption` says, and uses it as the photo's alt text.
        let cli = bin()
            .args(["caption", "--model"])
            .arg(&model().0)
            .arg(photo(5))
            .assert()
            .success();
        let expected = String::from_utf8(cli.get_output().stdout.clone()).unwrap();
        assert_eq!(caption, expected.trim());
        assert_eq!(
            eval(&mut cdp, "document.getElementById('preview').alt"),
            caption.as_str()
        );
        // Wait for the image to be drawn, then keep a screenshot.
        std::thread::sleep(Duration::from_millis(300));
        let shot = cdp.call(
            "Page.captureScreenshot",
            serde_json::json!({"format": "png"}),
        );
        let png = base64_decode(shot["data"].as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"));
        std::fs::write(screenshot_path(), png).unwrap();
        eprintln!(
            "screenshot: {} (caption: {caption})",
            screenshot_path().display()
        );
    });
    let _ = browser.kill();
    let _ = browser.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// A DevTools-protocol connection (JSON over a WebSocket).
struct Cdp {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next: u64,
    session: Option<String>,
}

impl Cdp {
    fn connect(url: &str) -> Self {
        let (ws, _) = tungstenite::connect(url).unwrap();
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        }
        Self {
            ws,
            next: 1,
            session: None,
        }
    }

    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let id = self.next;
        self.next += 1;
        let mut msg = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = serde_json::json!(s);
        }
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            let m = self.ws.read().unwrap();
            let Ok(text) = m.to_text() else { continue };
            let v: serde_json::Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(_) => continue,
            };
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {}", v["error"]);
                return v["result"].clone();
            }
        }
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => 0,
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | (val(c) as u32) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// schemathesis (PyPI) against /openapi.json: no server error, every status, content type,
/// header and body as the document says, unsupported methods refused. Runs where `AUTOCAPTION_SCHEMATHESIS` names the `schemathesis` program (or it is
/// on PATH); skips otherwise.
#[test]
fn schemathesis_finds_no_server_error_or_schema_violation() {
    let program =
        std::env::var("AUTOCAPTION_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());
    if Process::new(&program)
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        eprintln!(
            "skipped: no schemathesis (pip install schemathesis; set AUTOCAPTION_SCHEMATHESIS)"
        );
        return;
    }
    let server = Server::start(&["--max-body-bytes", "100000"]);
    let out = Process::new(&program)
        .args(["run", &format!("http://{}/openapi.json", server.addr)])
        // Every check but one: random bytes are a valid `format: binary` body, yet not an
        // image, so the server's 400 for them is right where that check expects a 2xx.
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args(["--max-examples", "100", "--seed", "1"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert_eq!(server.get("/healthz").status, 200);
}

#[test]
fn requests_that_arrive_together_are_captioned_in_one_batch() {
    let server = Server::start(&["--batch-wait-ms", "500", "--max-batch", "8"]);
    let addr = server.addr;
    let barrier = Arc::new(std::sync::Barrier::new(6));
    let answers: Vec<serde_json::Value> = (0..6)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let png = std::fs::read(photo(i)).unwrap();
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                barrier.wait();
                s.write_all(post_head("/v1/captions", "image/png", png.len()).as_bytes())
                    .unwrap();
                s.write_all(&png).unwrap();
                let r = read_reply(&mut s);
                assert_eq!(r.status, 200);
                r.json()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let largest = answers
        .iter()
        .map(|a| a["timings"]["batch"].as_u64().unwrap())
        .max()
        .unwrap();
    assert!(largest > 1, "no two requests shared a batch: {answers:?}");
    // Batched or not, each photo gets the caption it gets alone; the score moves in the last
    // bits only (the products sum in another order at another batch size).
    for (i, a) in answers.iter().enumerate() {
        let png = std::fs::read(photo(i)).unwrap();
        let alone = server.post("/v1/captions", "image/png", &png).json();
        assert_eq!(alone["timings"]["batch"], 1);
        assert_eq!(a["caption"], alone["caption"], "photo {i}");
        let (x, y) = (
            a["score"].as_f64().unwrap(),
            alone["score"].as_f64().unwrap(),
        );
        assert!(
            (x - y).abs() <= 1e-5 * y.abs(),
            "photo {i}: {x} against {y}"
        );
    }
}

#[test]
fn a_request_past_its_time_limit_gets_503_with_retry_after() {
    let server = Server::start(&["--timeout-ms", "1"]);
    let png = std::fs::read(photo(0)).unwrap();
    let r = server.post("/v1/captions", "image/png", &png);
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.error_code(), "timeout");
    assert_eq!(server.get("/healthz").status, 200);
}
