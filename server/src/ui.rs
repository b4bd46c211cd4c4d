//! The web UI: the files of the built UI (`dist/`, written by `trunk build --release`) are
//! embedded in the binary when it is compiled, so the binary alone serves everything; a folder
//! given with `--ui-dir` replaces them (for development, or a customised UI).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use actix_web::web::Bytes;

use actix_web::http::Method;
use actix_web::http::header::{self, EntityTag, IfNoneMatch};
use actix_web::{HttpRequest, HttpResponse};

/// `dist/` as it was when the binary was built (dotfiles such as trunk's lock left out). Empty if
/// it did not exist then.
#[derive(rust_embed::RustEmbed)]
#[folder = "../dist/"]
#[allow_missing = true]
#[exclude = ".*"]
struct Embedded;

/// Where the UI comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A folder on disk (`--ui-dir`).
    Folder(PathBuf),
    /// The files built into the binary.
    Embedded,
    /// Neither: a page that says how to build the UI.
    Missing,
}

impl Source {
    /// `--ui-dir` if given (`Missing` if it holds no `index.html`: what the operator named is
    /// not silently replaced), else the embedded UI if the binary was built with one.
    pub fn choose(ui_dir: Option<&std::path::Path>) -> Source {
        match ui_dir {
            Some(dir) if dir.join("index.html").is_file() => Source::Folder(dir.to_owned()),
            Some(_) => Source::Missing,
            None if Embedded::get("index.html").is_some() => Source::Embedded,
            None => Source::Missing,
        }
    }

    /// The first bytes of the SHA-256 of the embedded `index.html` (which names the hashed
    /// script and wasm files), to tell from the log which UI build a binary carries.
    pub fn embedded_version() -> Option<String> {
        let index = Embedded::get("index.html")?;
        Some(index.metadata.sha256_hash()[..6].iter().map(|byte| format!("{byte:02x}")).collect())
    }
}

/// Serves a file of the embedded UI (`/` is `index.html`). Revalidation is cheap: every file has
/// an ETag (its SHA-256), and a matching `If-None-Match` gets `304 Not Modified`. Clients that
/// accept gzip get it, compressed once per file and kept (see [`gzipped`]).
pub async fn embedded(request: HttpRequest) -> HttpResponse {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "GET, HEAD"))
            .finish();
    }
    let path = match request.path().trim_start_matches('/') {
        "" => "index.html",
        path => path,
    };
    let Some(file) = Embedded::get(path) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("not found\n");
    };
    let mime = file.metadata.mimetype();
    let gzip = accepts_gzip(&request) && compressible(mime);
    let hash = file.metadata.sha256_hash();
    let mut tag: String = hash[..16].iter().map(|byte| format!("{byte:02x}")).collect();
    if gzip {
        // Another representation, another tag.
        tag.push_str("-gz");
    }
    let tag = EntityTag::new_strong(tag);
    let fresh = match request
        .headers()
        .get(header::IF_NONE_MATCH)
        .map(|_| actix_web::http::header::Header::parse(&request))
    {
        Some(Ok(IfNoneMatch::Any)) => true,
        Some(Ok(IfNoneMatch::Items(tags))) => tags.iter().any(|known| known.weak_eq(&tag)),
        _ => false,
    };
    let mut response = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    response
        .insert_header(header::ETag(tag))
        // Names of scripts and styles change with their content, but index.html's does not:
        // always ask, and let the ETag make asking cheap.
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    response.insert_header((header::VARY, "accept-encoding"));
    if fresh {
        return response.finish();
    }
    let content_type = if mime.starts_with("text/") || mime == "application/javascript" {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    response.content_type(content_type);
    if gzip {
        response.insert_header((header::CONTENT_ENCODING, "gzip"));
        return response.body(gzipped(path, &file.data));
    }
    response.body(file.data)
}

fn accepts_gzip(request: &HttpRequest) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused =
                parts.any(|param| matches!(param.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn compressible(mime: &str) -> bool {
    mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript" | "application/wasm" | "application/json" | "image/svg+xml"
        )
}

/// The gzip of the embedded file at `path`, made on first request and kept: the UI is a few
/// files, so this holds at most a copy of each, compressed.
fn gzipped(path: &str, data: &[u8]) -> Bytes {
    static CACHE: OnceLock<Mutex<HashMap<String, Bytes>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let known = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(path).cloned();
    if let Some(known) = known {
        return known;
    }
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    let compressed = Bytes::from(encoder.finish().unwrap_or_default());
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(path.to_owned(), compressed.clone());
    compressed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(value: &str) -> bool {
        let request = actix_web::test::TestRequest::default()
            .insert_header((header::ACCEPT_ENCODING, value))
            .to_http_request();
        accepts_gzip(&request)
    }

    #[test]
    fn gzip_is_sent_only_to_clients_that_accept_it() {
        assert!(accepts("gzip, deflate, br"));
        assert!(accepts("br;q=1.0, GZIP;q=0.5"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("deflate, br"));
        assert!(!accepts(""));
    }
}
