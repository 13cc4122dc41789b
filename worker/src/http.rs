//! The HTTP client steps share (rustls on the `ring` provider, webpki roots), URLs made safe
//! to show, errors described without the URL reqwest puts in them, and dotted paths into JSON.

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// Builds a client. Timeouts are set per request by the caller.
pub fn client() -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("setting up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("building the HTTP client: {}", describe(&e)))
}

/// The URL with any `user:password@` removed, fit for logs and error messages.
pub fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if !parsed.username().is_empty() || parsed.password().is_some() => {
            // both setters only fail on URLs that cannot have credentials, which these have
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        // not a URL: nothing reqwest could send either; show up to the first `@` only
        Err(_) => match url.split_once('@') {
            Some((_, host)) => format!("…@{host}"),
            None => url.to_owned(),
        },
    }
}

/// What went wrong with a request, in words, without the URL reqwest puts in its own message
/// (which would show a password written in it).
pub fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "reading the response failed"
    } else if error.is_redirect() {
        "too many redirects"
    } else if error.is_builder() {
        "the request is not valid"
    } else {
        "the request failed"
    };
    let mut causes = Vec::new();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // hyper's and reqwest's wrappers repeat their cause; keep the innermost words
        if !text.is_empty() && !causes.iter().any(|c: &String| c.contains(&text)) {
            causes.push(text);
        }
        source = cause.source();
    }
    match causes.last() {
        Some(cause) => format!("{kind}: {cause}"),
        None => kind.to_owned(),
    }
}

/// A human duration for log lines: `85 ms`, `2.4 s`.
pub fn elapsed(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis} ms")
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

/// Up to `limit` bytes of a body as text, cut on a character boundary, `…` when cut.
pub fn excerpt(body: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(limit)]).into_owned();
    let text = text.trim_end_matches('\u{FFFD}').trim().to_owned();
    if body.len() > limit {
        format!("{text}…")
    } else {
        text
    }
}

/// The value at a dotted path (`data.items.0.id`; a number indexes an array), or why it is
/// not there, naming the deepest part of the path that exists.
pub fn json_path<'v>(root: &'v Value, path: &str) -> Result<&'v Value, String> {
    let mut value = root;
    let mut walked: Vec<&str> = Vec::new();
    for part in path.split('.').filter(|part| !part.is_empty()) {
        let here = if walked.is_empty() {
            "the response".to_owned()
        } else {
            format!("`{}`", walked.join("."))
        };
        let next = match value {
            Value::Object(map) => map
                .get(part)
                .ok_or_else(|| format!("{here} has no key `{part}`")),
            Value::Array(items) => match part.parse::<usize>() {
                Ok(index) => items.get(index).ok_or_else(|| {
                    format!("{here} has {} elements, no index {index}", items.len())
                }),
                Err(_) => Err(format!("{here} is an array; `{part}` is not an index")),
            },
            other => Err(format!("{here} is {}, not an object", kind_of(other))),
        };
        value = next?;
        walked.push(part);
    }
    Ok(value)
}

/// `a string`, `null`, `an array`, … for messages about JSON.
pub fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn display_url_drops_user_and_password() {
        assert_eq!(
            display_url("https://user:secret@api.example.com/v1?x=1"),
            "https://api.example.com/v1?x=1"
        );
        assert_eq!(display_url("http://127.0.0.1:9/a"), "http://127.0.0.1:9/a");
        assert_eq!(display_url("nope user:secret@host"), "…@host");
    }

    #[test]
    fn json_path_walks_objects_and_arrays_and_names_what_is_missing() {
        let body = json!({"data": {"items": [{"id": 7}], "n": 1}});
        assert_eq!(json_path(&body, "data.items.0.id").unwrap(), &json!(7));
        assert_eq!(json_path(&body, "").unwrap(), &body);
        assert_eq!(
            json_path(&body, "data.items.3.id").unwrap_err(),
            "`data.items` has 1 elements, no index 3"
        );
        assert_eq!(
            json_path(&body, "data.total").unwrap_err(),
            "`data` has no key `total`"
        );
        assert_eq!(
            json_path(&body, "meta").unwrap_err(),
            "the response has no key `meta`"
        );
        assert_eq!(
            json_path(&body, "data.n.x").unwrap_err(),
            "`data.n` is a number, not an object"
        );
        assert_eq!(
            json_path(&body, "data.items.first").unwrap_err(),
            "`data.items` is an array; `first` is not an index"
        );
    }

    #[test]
    fn excerpt_cuts_long_bodies() {
        assert_eq!(excerpt(b"short", 500), "short");
        assert_eq!(excerpt(b"abcdef", 3), "abc…");
    }
}
