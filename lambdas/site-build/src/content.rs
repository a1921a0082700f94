//! The `Content-Type` and `Cache-Control` each published file is served with.
//!
//! Caching follows what can change under a stable URL:
//! - HTML, and the manifest-like files at the site root (`robots.txt`,
//!   `sitemap.xml`, `manifest.json`), keep their URL across deploys, so
//!   caches must check back every time;
//! - fingerprinted bundler output (`_astro/index.3f9a1c2b.js`,
//!   `assets/app-BQ4ZtN2k.css`) gets a new name whenever its bytes change,
//!   so it can be cached for a year;
//! - everything else (images in `public/`, fonts, downloads) keeps its name
//!   across edits but rarely changes: an hour.

/// Paths are relative to the site root, with `/` separators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheClass {
    Revalidate,
    Immutable,
    ShortLived,
}

impl CacheClass {
    pub fn for_path(path: &str) -> Self {
        let name = path.rsplit('/').next().unwrap_or(path);
        let extension = extension(name);
        let at_root = !path.contains('/');
        if matches!(extension.as_deref(), Some("html" | "htm"))
            || (at_root
                && matches!(
                    extension.as_deref(),
                    Some("json" | "xml" | "txt" | "webmanifest")
                ))
        {
            CacheClass::Revalidate
        } else if is_fingerprinted(name) {
            CacheClass::Immutable
        } else {
            CacheClass::ShortLived
        }
    }

    pub fn cache_control(self) -> &'static str {
        match self {
            CacheClass::Revalidate => "public, max-age=0, must-revalidate",
            CacheClass::Immutable => "public, max-age=31536000, immutable",
            CacheClass::ShortLived => "public, max-age=3600",
        }
    }
}

/// The `Content-Type` for a site path. Text gets an explicit charset: without
/// one, browsers guess, and a guess other than UTF-8 garbles non-ASCII text.
pub fn content_type(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    let essence = match extension(name).as_deref() {
        // mime_guess says text/plain for source maps; they are JSON.
        Some("map") => "application/json".to_owned(),
        // Both are JavaScript modules; RFC 9239 names text/javascript.
        Some("mjs" | "cjs") => "text/javascript".to_owned(),
        Some(ext) => mime_guess::from_ext(ext)
            .first_raw()
            .unwrap_or("application/octet-stream")
            .to_owned(),
        None => "application/octet-stream".to_owned(),
    };
    if is_text(&essence) {
        format!("{essence}; charset=utf-8")
    } else {
        essence
    }
}

/// The `Cache-Control` for a site path.
pub fn cache_control(path: &str) -> &'static str {
    CacheClass::for_path(path).cache_control()
}

fn extension(name: &str) -> Option<String> {
    name.rsplit_once('.')
        .filter(|(stem, ext)| !stem.is_empty() && !ext.is_empty())
        .map(|(_, ext)| ext.to_ascii_lowercase())
}

fn is_text(essence: &str) -> bool {
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence,
            "application/javascript" | "application/json" | "application/xml"
        )
}

/// Whether a file name carries a content hash, the way bundlers name output:
/// `name.HASH.ext` (Astro, webpack) or `name-HASH.ext` (Vite, Rollup).
fn is_fingerprinted(name: &str) -> bool {
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    let mut segments = stem.split('.');
    let first = segments.next().unwrap_or_default();
    // `index.3f9a1c2b.js`, `main.3f9a1c2b7e.chunk.js`
    let mut candidates: Vec<&str> = segments.collect();
    let last = candidates.last().copied().unwrap_or(first);
    // `app-BQ4ZtN2k.css`
    if let Some((_, tail)) = last.rsplit_once('-') {
        candidates.push(tail);
    }
    // Vite's 8-character base64url hashes may contain `-` or `_` themselves
    // (`index-B_x9-aQz.js`), so also try the last 8 characters after a `-`.
    if last.len() > 9 && last.as_bytes()[last.len() - 9] == b'-' {
        candidates.push(&last[last.len() - 8..]);
    }
    candidates.into_iter().any(looks_like_hash)
}

/// A hex run of 8 to 64 digits (webpack, Astro before 3), or a base64url
/// run of 8 to 16 characters (Vite, Astro, esbuild), that does not read like
/// a word: letters and digits mixed, or a capital letter inside. This is a
/// guess; it errs towards *not* immutable, because an ordinary file wrongly
/// cached for a year is far worse than a hashed one re-fetched after an hour.
fn looks_like_hash(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    let has_digit = bytes.iter().any(u8::is_ascii_digit);
    let has_letter = bytes.iter().any(u8::is_ascii_alphabetic);
    if (8..=64).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_hexdigit) {
        return has_digit && has_letter;
    }
    if !(8..=16).contains(&bytes.len())
        || !bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
    {
        return false;
    }
    let has_lower = bytes.iter().any(u8::is_ascii_lowercase);
    let has_inner_upper = bytes[1..].iter().any(u8::is_ascii_uppercase);
    (has_digit && has_letter) || (has_lower && has_inner_upper)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_types_say_utf8() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("blog/post/index.html"),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type("_astro/app.3f9a1c2b.css"),
            "text/css; charset=utf-8"
        );
        assert_eq!(
            content_type("_astro/app.3f9a1c2b.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("chunk.mjs"), "text/javascript; charset=utf-8");
        assert_eq!(
            content_type("manifest.json"),
            "application/json; charset=utf-8"
        );
        assert_eq!(
            content_type("app.js.map"),
            "application/json; charset=utf-8"
        );
        assert_eq!(content_type("sitemap.xml"), "text/xml; charset=utf-8");
        assert_eq!(content_type("robots.txt"), "text/plain; charset=utf-8");
        assert_eq!(content_type("logo.svg"), "image/svg+xml; charset=utf-8");
        assert_eq!(
            content_type("site.webmanifest"),
            "application/manifest+json; charset=utf-8"
        );
        assert_eq!(content_type("INDEX.HTML"), "text/html; charset=utf-8");
    }

    #[test]
    fn binary_types_have_no_charset() {
        assert_eq!(content_type("img/hero.png"), "image/png");
        assert_eq!(content_type("img/hero.webp"), "image/webp");
        assert_eq!(content_type("fonts/inter.woff2"), "font/woff2");
        assert_eq!(content_type("favicon.ico"), "image/x-icon");
        assert_eq!(content_type("pkg.wasm"), "application/wasm");
    }

    #[test]
    fn unknown_and_missing_extensions_are_octet_stream() {
        assert_eq!(content_type("data.unknownext"), "application/octet-stream");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
        assert_eq!(
            content_type(".well-known/apple-app-site-association"),
            "application/octet-stream"
        );
        assert_eq!(content_type(".nojekyll"), "application/octet-stream");
    }

    #[test]
    fn html_and_root_manifests_are_revalidated() {
        for path in [
            "index.html",
            "about/index.html",
            "404.html",
            "legacy.htm",
            "robots.txt",
            "sitemap.xml",
            "sitemap-index.xml",
            "manifest.json",
            "site.webmanifest",
            "_astro/page.3f9a1c2b.html",
        ] {
            assert_eq!(
                cache_control(path),
                "public, max-age=0, must-revalidate",
                "{path}"
            );
        }
    }

    #[test]
    fn fingerprinted_assets_are_immutable() {
        for path in [
            "_astro/index.3f9a1c2b.js",
            "assets/app-BQ4ZtN2k.css",
            "assets/index-B_x9-aQz.js",
            "_astro/hero.DxR2Xq_N.webp",
            "static/js/main.3f9a1c2b7e.chunk.js",
            "_astro/Layout.astro_astro_type_script_index_0_lang.Cx8Yz1Qa.js",
            "assets/vendor-9c1d3e5f7a.js",
            "assets/chunk-P7ITHKV2.js",
            "main.0123456789abcdef0123.js",
        ] {
            assert_eq!(
                cache_control(path),
                "public, max-age=31536000, immutable",
                "{path}"
            );
        }
    }

    #[test]
    fn everything_else_is_cached_for_an_hour() {
        for path in [
            "img/logo.png",
            "team-Portrait.jpg",
            "img/background.jpg",
            "downloads/report-20240101.pdf",
            "data/posts.json",
            "feeds/rss.xml",
            "fonts/inter-var.woff2",
            "favicon.ico",
            "LICENSE",
            "assets/app-deadbeef.css",
            "docs/guide.getting_started_v2.pdf",
        ] {
            assert_eq!(cache_control(path), "public, max-age=3600", "{path}");
        }
    }
}
