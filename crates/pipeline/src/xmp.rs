//! XMP sidecars: the caption as `dc:description` (x-default) and its content words as
//! `dc:subject` keywords, merged into a sidecar that may already exist (darktable, digiKam,
//! Lightroom and exiftool write them). Every element and attribute we do not own is copied
//! through as it was; what we wrote last time is remembered under our own namespace, so a
//! rerun replaces our caption and keywords without touching the ones a person wrote.

use std::path::{Path, PathBuf};

use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use quick_xml::Writer;

use crate::{Error, Result};

const RDF: &[u8] = b"http://www.w3.org/1999/02/22-rdf-syntax-ns#";
const DC: &[u8] = b"http://purl.org/dc/elements/1.1/";
/// Our namespace: the caption and keywords we wrote, the model and score.
pub const AUTOCAPTION_NS: &str = "https://example.invalid/autocaption/xmp/1.0/";

/// Where a photo's sidecar goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SidecarNaming {
    /// `photo.jpg.xmp`: darktable and digiKam (their default).
    #[default]
    WithExtension,
    /// `photo.xmp`: Lightroom, Capture One, exiftool's `-o %d%f.xmp`.
    ReplaceExtension,
}

impl std::str::FromStr for SidecarNaming {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "ext" | "photo.jpg.xmp" => Ok(Self::WithExtension),
            "base" | "photo.xmp" => Ok(Self::ReplaceExtension),
            _ => Err(format!(
                "{s:?}: expected ext (photo.jpg.xmp: darktable, digiKam) or base (photo.xmp: \
                 Lightroom, exiftool)"
            )),
        }
    }
}

impl SidecarNaming {
    /// The sidecar of `photo`.
    pub fn sidecar(self, photo: &Path) -> PathBuf {
        match self {
            Self::WithExtension => {
                let mut name = photo.as_os_str().to_os_string();
                name.push(".xmp");
                PathBuf::from(name)
            }
            Self::ReplaceExtension => photo.with_extension("xmp"),
        }
    }
}

/// Words that say nothing on their own: left out of the keywords.
const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "and", "or", "of", "on", "in", "at", "to", "with", "by", "for", "from",
    "into", "onto", "over", "under", "is", "are", "was", "were", "be", "its", "it", "his", "her",
    "their", "while", "as", "up", "down", "out", "off", "some", "one", "two", "three", "other",
    "another", "each", "very", "there", "this", "that", "near", "next", "front", "behind",
    "through", "around",
];

/// The caption's content words, in order, once each.
pub fn keywords(caption: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for w in caption.split_whitespace() {
        let w = w.to_lowercase();
        if w.chars().count() > 1 && !STOP_WORDS.contains(&w.as_str()) && !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// What goes into a sidecar for one photo.
#[derive(Debug, Clone)]
pub struct SidecarCaption<'a> {
    /// The caption.
    pub caption: &'a str,
    /// Its score.
    pub score: f64,
    /// What made it (the model directory's name).
    pub model: &'a str,
}

/// What was found in an existing sidecar.
#[derive(Debug, Default)]
struct Found {
    /// dc:description: (language, text) a list item.
    descriptions: Vec<(String, String)>,
    /// dc:subject keywords.
    keywords: Vec<String>,
    /// Our caption and keywords of last time.
    our_caption: Option<String>,
    our_keywords: Vec<String>,
}

fn xml_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::file(
        path,
        format!("not a readable XMP sidecar ({e}); it was left as it was"),
    )
}

fn is(ns: &ResolveResult<'_>, uri: &[u8]) -> bool {
    matches!(ns, ResolveResult::Bound(n) if n.as_ref() == uri)
}

fn ours(ns: &ResolveResult<'_>) -> bool {
    is(ns, AUTOCAPTION_NS.as_bytes())
}

/// The sidecar `existing` (or a new one) with `c` merged in.
pub fn merge_sidecar(
    path: &Path,
    existing: Option<&str>,
    c: &SidecarCaption<'_>,
) -> Result<String> {
    let Some(text) = existing else {
        return Ok(new_sidecar(c));
    };
    // First pass: what is there.
    let found = read_found(path, text)?;
    // The description: ours replaces x-default when there is none, or when it is the one
    // we wrote last time; a person's own words stay.
    let default = found
        .descriptions
        .iter()
        .find(|(l, _)| l == "x-default")
        .map(|(_, t)| t.clone());
    let replace = match &default {
        None => true,
        Some(d) => d.trim().is_empty() || found.our_caption.as_deref() == Some(d.as_str()),
    };
    let mut descriptions = found.descriptions.clone();
    if replace {
        descriptions.retain(|(l, _)| l != "x-default");
        descriptions.insert(0, ("x-default".into(), c.caption.to_string()));
    }
    let new_keywords = keywords(c.caption);
    let mut subject: Vec<String> = found
        .keywords
        .iter()
        .filter(|k| !found.our_keywords.contains(k))
        .cloned()
        .collect();
    for k in &new_keywords {
        if !subject.contains(k) {
            subject.push(k.clone());
        }
    }
    rewrite(path, text, &descriptions, &subject, c, &new_keywords)
}

fn read_found(path: &Path, text: &str) -> Result<Found> {
    let mut r = NsReader::from_str(text);
    let mut found = Found::default();
    let mut stack: Vec<(bool, bool, Vec<u8>)> = Vec::new(); // (dc, ours, local name)
    let mut li_lang: Option<String> = None;
    let mut buf = String::new();
    let mut saw_description = false;
    loop {
        let (ns, ev) = r.read_resolved_event().map_err(|e| xml_err(path, e))?;
        match ev {
            Event::Start(e) => {
                let local = e.local_name().as_ref().to_vec();
                if is(&ns, RDF) && local == b"Description" {
                    saw_description = true;
                }
                if is(&ns, RDF) && local == b"li" {
                    li_lang = e
                        .attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == b"xml:lang")
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned());
                }
                stack.push((is(&ns, DC), ours(&ns), local));
                buf.clear();
            }
            Event::Empty(e) if is(&ns, RDF) && e.local_name().as_ref() == b"Description" => {
                saw_description = true;
            }
            Event::Text(t) => {
                buf.push_str(&t.decode().map_err(|e| xml_err(path, e))?);
            }
            Event::GeneralRef(e) => {
                let name = e.decode().map_err(|e| xml_err(path, e))?;
                let s = match name.as_ref() {
                    "amp" => "&".to_string(),
                    "lt" => "<".into(),
                    "gt" => ">".into(),
                    "quot" => "\"".into(),
                    "apos" => "'".into(),
                    n => e
                        .resolve_char_ref()
                        .ok()
                        .flatten()
                        .map(String::from)
                        .unwrap_or_else(|| format!("&{n};")),
                };
                buf.push_str(&s);
            }
            Event::CData(t) => buf.push_str(&String::from_utf8_lossy(&t)),
            Event::End(_) => {
                let Some((_, _, local)) = stack.pop() else {
                    continue;
                };
                // The property this value belongs to: the nearest dc or ours ancestor.
                let prop = stack.iter().rev().find(|(dc, o, _)| *dc || *o);
                if local == b"li" {
                    match prop {
                        Some((true, _, p)) if p == b"description" => found.descriptions.push((
                            li_lang.take().unwrap_or_else(|| "x-default".into()),
                            buf.clone(),
                        )),
                        Some((true, _, p)) if p == b"subject" => found.keywords.push(buf.clone()),
                        _ => {}
                    }
                }
                buf_take_ours(&mut found, &ns, &local, &buf);
                buf.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_description {
        return Err(xml_err(path, "no rdf:Description"));
    }
    Ok(found)
}

fn buf_take_ours(found: &mut Found, ns: &ResolveResult<'_>, local: &[u8], text: &str) {
    if !ours(ns) {
        return;
    }
    match local {
        b"caption" => found.our_caption = Some(text.to_string()),
        b"keywords" => {
            found.our_keywords = text
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect()
        }
        _ => {}
    }
}

fn new_sidecar(c: &SidecarCaption<'_>) -> String {
    let template = "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n\
<x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\n\
 <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n\
  <rdf:Description rdf:about=\"\"/>\n\
 </rdf:RDF>\n\
</x:xmpmeta>\n\
<?xpacket end=\"w\"?>\n";
    let descriptions = vec![("x-default".to_string(), c.caption.to_string())];
    let kw = keywords(c.caption);
    rewrite(Path::new("(new)"), template, &descriptions, &kw, c, &kw)
        .expect("the template is valid XMP")
}

/// Copies `text` through, leaving out dc:description, dc:subject and our properties, and
/// writing ours into the first rdf:Description.
fn rewrite(
    path: &Path,
    text: &str,
    descriptions: &[(String, String)],
    subject: &[String],
    c: &SidecarCaption<'_>,
    ours_keywords: &[String],
) -> Result<String> {
    let mut r = NsReader::from_str(text);
    let mut w = Writer::new(Vec::new());
    let mut skipping = 0usize; // depth inside an element we replace
    let mut first_done = false;
    let mut in_first = 0usize; // depth inside the first rdf:Description (1 = its children)
    let write = |w: &mut Writer<Vec<u8>>, e: Event<'_>| -> Result<()> {
        w.write_event(e).map_err(|e| xml_err(path, e))
    };
    // Whitespace between elements waits here: it goes out before the next element, and is
    // dropped with an element we replace (so reruns do not pile up blank lines).
    let mut pending: Vec<Event<'static>> = Vec::new();
    loop {
        let (ns, ev) = r.read_resolved_event().map_err(|e| xml_err(path, e))?;
        if skipping > 0 {
            match ev {
                Event::Start(_) => skipping += 1,
                Event::End(_) => skipping -= 1,
                Event::Eof => return Err(xml_err(path, "unexpected end of file")),
                _ => {}
            }
            continue;
        }
        let replaced = |local: &[u8]| {
            (is(&ns, DC) && (local == b"description" || local == b"subject")) || ours(&ns)
        };
        if let Event::Text(t) = &ev {
            if t.iter().all(u8::is_ascii_whitespace) {
                pending.push(Event::Text(t.clone().into_owned()));
                continue;
            }
        }
        let drop_space = match &ev {
            Event::Start(e) | Event::Empty(e) => {
                (in_first > 0 || first_done) && replaced(e.local_name().as_ref())
            }
            Event::End(_) => in_first == 1,
            _ => false,
        };
        if drop_space {
            pending.clear();
        }
        for p in pending.drain(..) {
            write(&mut w, p)?;
        }
        match ev {
            Event::Start(e) if in_first > 0 || first_done => {
                if replaced(e.local_name().as_ref()) {
                    skipping = 1;
                    continue;
                }
                if in_first > 0 {
                    in_first += 1;
                }
                write(&mut w, Event::Start(e))?;
            }
            Event::Empty(e) if replaced(e.local_name().as_ref()) => {}
            Event::Start(e) if is(&ns, RDF) && e.local_name().as_ref() == b"Description" => {
                write(&mut w, Event::Start(declare(e)))?;
                in_first = 1;
            }
            Event::Empty(e)
                if !first_done && is(&ns, RDF) && e.local_name().as_ref() == b"Description" =>
            {
                let start = declare(e);
                let end = start.to_end().into_owned();
                write(&mut w, Event::Start(start))?;
                write_ours(&mut w, descriptions, subject, c, ours_keywords, path)?;
                write(&mut w, Event::End(end))?;
                first_done = true;
            }
            Event::End(e) if in_first == 1 => {
                write_ours(&mut w, descriptions, subject, c, ours_keywords, path)?;
                write(&mut w, Event::End(e))?;
                in_first = 0;
                first_done = true;
            }
            Event::End(e) => {
                if in_first > 1 {
                    in_first -= 1;
                }
                write(&mut w, Event::End(e))?;
            }
            Event::Eof => break,
            other => write(&mut w, other)?,
        }
    }
    if !first_done {
        return Err(xml_err(path, "no rdf:Description"));
    }
    String::from_utf8(w.into_inner()).map_err(|e| xml_err(path, e))
}

/// The rdf:Description start tag with the dc and autocaption prefixes declared (unless it
/// declares them already).
fn declare(e: BytesStart<'_>) -> BytesStart<'static> {
    let mut out = e.into_owned();
    let has =
        |out: &BytesStart<'_>, k: &[u8]| out.attributes().flatten().any(|a| a.key.as_ref() == k);
    if !has(&out, b"xmlns:dc") {
        out.push_attribute(("xmlns:dc", "http://purl.org/dc/elements/1.1/"));
    }
    if !has(&out, b"xmlns:autocaption") {
        out.push_attribute(("xmlns:autocaption", AUTOCAPTION_NS));
    }
    out
}

fn write_ours(
    w: &mut Writer<Vec<u8>>,
    descriptions: &[(String, String)],
    subject: &[String],
    c: &SidecarCaption<'_>,
    ours_keywords: &[String],
    path: &Path,
) -> Result<()> {
    let err = |e: std::io::Error| xml_err(path, e);
    let indent = |w: &mut Writer<Vec<u8>>| {
        w.write_event(Event::Text(BytesText::from_escaped("\n   ")))
            .map_err(|e| xml_err(path, e))
    };
    let simple = |w: &mut Writer<Vec<u8>>, name: &str, value: &str| -> Result<()> {
        w.create_element(name)
            .write_text_content(BytesText::new(value))
            .map(|_| ())
            .map_err(err)
    };
    indent(w)?;
    w.write_event(Event::Start(BytesStart::new("dc:description")))
        .map_err(|e| xml_err(path, e))?;
    w.write_event(Event::Start(BytesStart::new("rdf:Alt")))
        .map_err(|e| xml_err(path, e))?;
    for (lang, text) in descriptions {
        w.create_element("rdf:li")
            .with_attribute(("xml:lang", lang.as_str()))
            .write_text_content(BytesText::new(text))
            .map_err(err)?;
    }
    w.write_event(Event::End(BytesEnd::new("rdf:Alt")))
        .map_err(|e| xml_err(path, e))?;
    w.write_event(Event::End(BytesEnd::new("dc:description")))
        .map_err(|e| xml_err(path, e))?;
    if !subject.is_empty() {
        indent(w)?;
        w.write_event(Event::Start(BytesStart::new("dc:subject")))
            .map_err(|e| xml_err(path, e))?;
        w.write_event(Event::Start(BytesStart::new("rdf:Bag")))
            .map_err(|e| xml_err(path, e))?;
        for k in subject {
            simple(w, "rdf:li", k)?;
        }
        w.write_event(Event::End(BytesEnd::new("rdf:Bag")))
            .map_err(|e| xml_err(path, e))?;
        w.write_event(Event::End(BytesEnd::new("dc:subject")))
            .map_err(|e| xml_err(path, e))?;
    }
    indent(w)?;
    simple(w, "autocaption:caption", c.caption)?;
    indent(w)?;
    simple(w, "autocaption:keywords", &ours_keywords.join(", "))?;
    indent(w)?;
    simple(w, "autocaption:score", &format!("{:.6}", c.score))?;
    indent(w)?;
    simple(w, "autocaption:model", c.model)?;
    w.write_event(Event::Text(BytesText::from_escaped("\n  ")))
        .map_err(|e| xml_err(path, e))?;
    Ok(())
}

/// Writes (or updates) the sidecar of `photo` atomically; the photo is never opened for
/// writing.
pub fn write_sidecar(
    photo: &Path,
    naming: SidecarNaming,
    c: &SidecarCaption<'_>,
) -> Result<PathBuf> {
    let path = naming.sidecar(photo);
    let existing = if path.exists() {
        Some(autocaption_io::read_to_string(&path)?)
    } else {
        None
    };
    let text = merge_sidecar(&path, existing.as_deref(), c)?;
    autocaption_io::write_atomic(&path, text.as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DARKTABLE: &str = include_str!("../../../fixtures/xmp/darktable.jpg.xmp");

    fn c<'a>(caption: &'a str) -> SidecarCaption<'a> {
        SidecarCaption {
            caption,
            score: -1.25,
            model: "demo",
        }
    }

    /// (x-default description, keywords, our caption) as a second, independent reading.
    fn read(text: &str) -> (Option<String>, Vec<String>, Option<String>) {
        let f = read_found(Path::new("t"), text).unwrap();
        let d = f
            .descriptions
            .iter()
            .find(|(l, _)| l == "x-default")
            .map(|(_, t)| t.clone());
        (d, f.keywords, f.our_caption)
    }

    #[test]
    fn content_words_become_keywords() {
        assert_eq!(
            keywords("a dog runs on the grass with a dog"),
            vec!["dog", "runs", "grass"]
        );
    }

    #[test]
    fn a_darktable_sidecar_keeps_every_field_it_had() {
        let p = Path::new("darktable.jpg.xmp");
        let out = merge_sidecar(p, Some(DARKTABLE), &c("a dog runs on the beach")).unwrap();
        // Everything that was there is still there, byte for byte.
        for kept in [
            "xmp:Rating=\"3\"",
            "exif:DateTimeOriginal=\"2019:06:01 12:00:00\"",
            "darktable:history_end=\"1\"",
            "darktable:operation=\"exposure\"",
            "darktable:blendop_params=\"gz11eJxjYIAACQYYOOHEgAZY0QVwggZ7CB6pfnZ+AwCMEAgH\"",
            "<rdf:li xml:lang=\"x-default\">At the beach &amp; after</rdf:li>",
            "<rdf:li>places|beach</rdf:li>",
            "<darktable:masks_history>",
        ] {
            assert!(out.contains(kept), "{kept} lost:\n{out}");
        }
        assert_eq!(
            out.matches("xmlns:dc=").count(),
            1,
            "dc declared once:\n{out}"
        );
        let (d, k, ours) = read(&out);
        assert_eq!(d.as_deref(), Some("a dog runs on the beach"));
        assert_eq!(k, vec!["holiday", "family", "dog", "runs", "beach"]);
        assert_eq!(ours.as_deref(), Some("a dog runs on the beach"));
        // The same caption again: the same bytes.
        let again = merge_sidecar(p, Some(&out), &c("a dog runs on the beach")).unwrap();
        assert_eq!(again, out);
        // A new caption replaces ours and our keywords, and keeps the person's.
        let next = merge_sidecar(p, Some(&out), &c("a child plays in the sand")).unwrap();
        let (d, k, _) = read(&next);
        assert_eq!(d.as_deref(), Some("a child plays in the sand"));
        assert_eq!(k, vec!["holiday", "family", "child", "plays", "sand"]);
        assert!(next.contains("darktable:operation=\"exposure\""));
    }

    #[test]
    fn a_description_a_person_wrote_is_kept() {
        let p = Path::new("x.xmp");
        let first = merge_sidecar(p, None, &c("a red car")).unwrap();
        let edited = first.replace(
            "<rdf:li xml:lang=\"x-default\">a red car</rdf:li>",
            "<rdf:li xml:lang=\"x-default\">Grandpa's Alfa Romeo</rdf:li><rdf:li xml:lang=\"de\">Opas Alfa</rdf:li>",
        );
        let out = merge_sidecar(p, Some(&edited), &c("a blue car")).unwrap();
        let f = read_found(p, &out).unwrap();
        assert_eq!(
            f.descriptions,
            vec![
                ("x-default".to_string(), "Grandpa's Alfa Romeo".to_string()),
                ("de".to_string(), "Opas Alfa".to_string())
            ]
        );
        assert_eq!(f.our_caption.as_deref(), Some("a blue car"));
        assert_eq!(f.keywords, vec!["blue", "car"]);
    }

    #[test]
    fn a_new_sidecar_is_a_valid_packet_and_text_is_escaped() {
        let out = merge_sidecar(Path::new("n.xmp"), None, &c("fish & <chips>")).unwrap();
        assert!(out.starts_with("<?xpacket begin="));
        assert!(out.contains("fish &amp; &lt;chips&gt;"));
        let (d, k, _) = read(&out);
        assert_eq!(d.as_deref(), Some("fish & <chips>"));
        assert_eq!(k, vec!["fish", "<chips>"]);
    }

    #[test]
    fn a_sidecar_that_is_not_xmp_is_refused_and_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let photo = t.path().join("p.jpg");
        let side = t.path().join("p.jpg.xmp");
        for bad in [
            "not xml at all <",
            "<a><b></a>",
            "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"/>",
        ] {
            std::fs::write(&side, bad).unwrap();
            let e = write_sidecar(&photo, SidecarNaming::WithExtension, &c("x y")).unwrap_err();
            assert!(e.to_string().contains("not a readable XMP sidecar"), "{e}");
            assert_eq!(std::fs::read_to_string(&side).unwrap(), bad);
        }
        assert_eq!(
            SidecarNaming::ReplaceExtension.sidecar(Path::new("d/p.JPG")),
            Path::new("d/p.xmp")
        );
    }

    /// exiftool (Debian's libimage-exiftool-perl), where installed, reads our caption back
    /// from a sidecar we merged into darktable's.
    #[test]
    fn exiftool_reads_the_caption_back() {
        if std::process::Command::new("exiftool")
            .arg("-ver")
            .output()
            .is_err()
        {
            eprintln!("skipped: no exiftool (apt-get install libimage-exiftool-perl)");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let side = t.path().join("darktable.jpg.xmp");
        let out = merge_sidecar(&side, Some(DARKTABLE), &c("a dog runs on the beach")).unwrap();
        std::fs::write(&side, out).unwrap();
        let o = std::process::Command::new("exiftool")
            .args([
                "-j",
                "-XMP-dc:Description",
                "-XMP-dc:Subject",
                "-XMP-xmp:Rating",
                "-XMP-dc:Title",
            ])
            .arg(&side)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let v = &v[0];
        assert_eq!(v["Description"], "a dog runs on the beach");
        assert_eq!(
            v["Subject"],
            serde_json::json!(["holiday", "family", "dog", "runs", "beach"])
        );
        assert_eq!(v["Rating"], 3);
        assert_eq!(v["Title"], "At the beach & after");
    }
}
