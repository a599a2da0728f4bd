//! `deploy/`: the Slurm scripts run for real (one process a task, the array's variables set
//! by hand) and merge to the bytes of one run; the Kubernetes manifests are consistent, and
//! pass `kubectl apply --dry-run=client` where kubectl is installed.

use std::path::{Path, PathBuf};
use std::process::Command as Process;

use tempfile::TempDir;

mod common;
use common::{bin, concept_model};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// PATH with the freshly built `autocaption` first.
fn path_with_binary() -> String {
    let dir = assert_cmd::cargo::cargo_bin("autocaption")
        .parent()
        .unwrap()
        .to_path_buf();
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn the_slurm_array_and_merge_give_the_record_of_one_run() {
    let (model, images) = concept_model();
    let t = TempDir::new().unwrap();
    let out = t.path().join("out");
    let slurm = deploy().join("slurm");
    for task in 0..3 {
        let status = Process::new("bash")
            .arg(slurm.join("caption-array.sbatch"))
            .arg(images)
            .arg(model)
            .arg(&out)
            .env("PATH", path_with_binary())
            .env("SLURM_ARRAY_TASK_ID", task.to_string())
            .env("SLURM_ARRAY_TASK_COUNT", "3")
            .status()
            .unwrap();
        assert!(status.success(), "task {task}");
    }
    let status = Process::new("bash")
        .arg(slurm.join("merge.sbatch"))
        .arg(&out)
        .arg("3")
        .env("PATH", path_with_binary())
        .status()
        .unwrap();
    assert!(status.success());
    // The sidecars the array wrote stay beside the photos of this shared model: remove them.
    for e in std::fs::read_dir(images).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "xmp") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let one = t.path().join("one.jsonl");
    bin()
        .args(["caption", "-q", "--model"])
        .arg(model)
        .arg(images)
        .arg("--out")
        .arg(&one)
        .assert()
        .success();
    assert_eq!(
        std::fs::read(out.join("captions.jsonl")).unwrap(),
        std::fs::read(&one).unwrap()
    );
    assert!(out.join("captions.html").is_file() && out.join("captions.csv").is_file());
}

#[test]
fn the_kubernetes_manifests_agree_on_the_shards_and_pass_kubectl() {
    let dir = deploy().join("kubernetes");
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
    for job in ["features-job.yaml", "caption-job.yaml"] {
        let y = read(job);
        assert!(y.contains("completionMode: Indexed"), "{job}");
        assert!(
            y.contains("completions: 4") && y.contains("parallelism: 4"),
            "{job}"
        );
        assert!(y.contains("--shard \"${JOB_COMPLETION_INDEX}/4\""), "{job}");
        assert!(y.contains("-of-4."), "{job}");
    }
    let merge = read("merge-job.yaml");
    assert!(
        merge.contains("features-*-of-4.safetensors") && merge.contains("captions-*-of-4.jsonl")
    );
    if Process::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("skipped the dry run: no kubectl");
        return;
    }
    // `--dry-run=client` still asks a server which kinds exist: a stand-in that knows Jobs
    // and has none of them.
    let addr = discovery_server();
    let t = TempDir::new().unwrap();
    let config = t.path().join("kubeconfig");
    std::fs::write(
        &config,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{addr}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    namespace: default\n\
             current-context: c\nusers: []\n"
        ),
    )
    .unwrap();
    let o = Process::new("kubectl")
        .args([
            "apply",
            "--dry-run=client",
            "--validate=false",
            "-o",
            "name",
            "-f",
        ])
        .arg(&dir)
        .env("KUBECONFIG", &config)
        .env("HOME", t.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for job in [
        "autocaption-features",
        "autocaption-caption",
        "autocaption-merge",
    ] {
        assert!(stdout.contains(&format!("job.batch/{job}")), "{stdout}");
    }
}

/// A minimal Kubernetes API for discovery: the core group, batch/v1 with Jobs, and 404 for
/// every object.
fn discovery_server() -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
            }
            let path = path.split('?').next().unwrap_or("/");
            let (status, body) = match path {
                "/api" => (
                    200,
                    r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[]}"#,
                ),
                "/apis" => (
                    200,
                    r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[{"name":"batch","versions":[{"groupVersion":"batch/v1","version":"v1"}],"preferredVersion":{"groupVersion":"batch/v1","version":"v1"}}]}"#,
                ),
                "/api/v1" => (
                    200,
                    r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[]}"#,
                ),
                "/apis/batch/v1" => (
                    200,
                    r#"{"kind":"APIResourceList","groupVersion":"batch/v1","resources":[{"name":"jobs","singularName":"job","namespaced":true,"kind":"Job","verbs":["create","delete","get","list","patch","update","watch"]}]}"#,
                ),
                _ => (
                    404,
                    r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"not found","reason":"NotFound","code":404}"#,
                ),
            };
            let reason = if status == 200 { "OK" } else { "Not Found" };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}
