//! The `http` source of `ingest`: a JSON API read page by page (cursor, page number or `Link`
//! header), each request retried on 5xx, 429 and network errors with exponential backoff.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, LINK, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde_json::Value;
use sluice_core::spec::Pagination;

use super::Data;
use crate::http::{self, display_url, excerpt, json_path, kind_of};
use crate::steps::{StepContext, StepError};

pub(super) const DEFAULT_MAX_PAGES: u32 = 1000;
pub(super) const DEFAULT_TRIES: u32 = 5;
pub(super) const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// How long one request may take before it counts as failed (and is retried).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest pause between two tries, `Retry-After` included.
const MAX_PAUSE: Duration = Duration::from_secs(300);
const BODY_EXCERPT: usize = 500;

pub(super) struct Config {
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub records_path: Option<String>,
    pub pagination: Option<Pagination>,
    pub max_pages: u32,
    pub tries: u32,
    pub retry_delay: Duration,
}

pub(super) async fn fetch(
    config: &Config,
    ctx: &StepContext,
) -> Result<(Data, BTreeMap<String, Value>), StepError> {
    let base = Url::parse(&config.url).map_err(|e| {
        StepError::new(format!(
            "`source.http.url` `{}` is not a valid URL: {e}",
            display_url(&config.url)
        ))
    })?;
    let client = http::client().map_err(StepError::new)?;
    let mut records = Vec::new();
    let mut pages: u32 = 0;
    // a `page` pagination asks for page 1 (and its size) like every other page
    let mut next = Some(match &config.pagination {
        Some(Pagination::Page {
            param,
            size_param,
            size,
        }) => page_url(&base, param, size_param.as_ref(), *size, 1),
        _ => base.clone(),
    });
    let mut last_cursor: Option<String> = None;
    while let Some(url) = next.take() {
        if pages == config.max_pages {
            return Err(StepError::new(format!(
                "{} still had a next page after {pages} pages (`max_pages`): stopping rather than paginating without end; raise `max_pages` if the API really has more",
                display_url(base.as_str())
            )));
        }
        pages += 1;
        let (headers, body) = get(&client, &url, config, ctx).await?;
        let document: Value = serde_json::from_slice(&body).map_err(|e| {
            StepError::new(format!(
                "page {pages} from {} is not JSON ({e}): {}",
                display_url(url.as_str()),
                excerpt(&body, BODY_EXCERPT)
            ))
        })?;
        let page = page_records(&document, config.records_path.as_deref()).map_err(|why| {
            StepError::new(format!(
                "page {pages} from {}: {why}",
                display_url(url.as_str())
            ))
        })?;
        let count = page.len();
        records.extend(page.iter().cloned());
        ctx.log.line(format!("page {pages}: {count} records"));

        next = match &config.pagination {
            None => None,
            Some(Pagination::Cursor { param, cursor_path }) => {
                match next_cursor(&document, cursor_path)? {
                    None => None,
                    Some(cursor) if last_cursor.as_deref() == Some(cursor.as_str()) => {
                        return Err(StepError::new(format!(
                            "page {pages} from {} gave the same cursor `{cursor}` as the page before: stopping rather than reading it again",
                            display_url(url.as_str())
                        )));
                    }
                    Some(cursor) => {
                        let next_url = with_params(&base, &[(param, &cursor)]);
                        last_cursor = Some(cursor);
                        Some(next_url)
                    }
                }
            }
            Some(Pagination::Page {
                param,
                size_param,
                size,
            }) => {
                if count == 0 {
                    None
                } else {
                    Some(page_url(
                        &base,
                        param,
                        size_param.as_ref(),
                        *size,
                        pages + 1,
                    ))
                }
            }
            Some(Pagination::LinkHeader) => next_link(&headers, &url),
        };
    }
    let outputs = BTreeMap::from([("pages".to_owned(), Value::from(pages))]);
    Ok((Data::Records(records), outputs))
}

/// One GET, retried on 5xx, 429 and network errors; the headers and body of a 2xx answer.
async fn get(
    client: &reqwest::Client,
    url: &Url,
    config: &Config,
    ctx: &StepContext,
) -> Result<(HeaderMap, bytes::Bytes), StepError> {
    let shown = display_url(url.as_str());
    let mut pause = config.retry_delay;
    let mut try_number = 1;
    loop {
        let started = Instant::now();
        let mut request = client.get(url.clone()).timeout(REQUEST_TIMEOUT);
        for (name, value) in &config.headers {
            request = request.header(name, value);
        }
        let answer = async {
            let response = request.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        }
        .await;
        let (why, retry_after) = match answer {
            Ok((status, headers, body)) => {
                ctx.log.line(format!(
                    "GET {shown} → {status}, {} bytes in {}",
                    body.len(),
                    http::elapsed(started.elapsed())
                ));
                if status.is_success() {
                    return Ok((headers, body));
                }
                let why = format!(
                    "GET {shown} answered {status}: {}",
                    excerpt(&body, BODY_EXCERPT)
                );
                if !retryable(status) {
                    return Err(StepError::new(why));
                }
                (why, retry_after(&headers))
            }
            Err(error) => (format!("GET {shown}: {}", http::describe(&error)), None),
        };
        if try_number >= config.tries {
            let tries = if config.tries == 1 {
                "1 try".to_owned()
            } else {
                format!("{} tries", config.tries)
            };
            return Err(StepError::new(format!("{why} (gave up after {tries})")));
        }
        let wait = retry_after.unwrap_or(pause).min(MAX_PAUSE);
        ctx.log.line(format!(
            "try {try_number} of {} failed ({}); retrying in {}",
            config.tries,
            first_line(&why),
            http::elapsed(wait)
        ));
        tokio::time::sleep(wait).await;
        pause = (pause * 2).min(MAX_PAUSE);
        try_number += 1;
    }
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    excerpt(line.as_bytes(), 200)
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// The records of one page: the array at `records_path`, or the whole body.
fn page_records<'d>(
    document: &'d Value,
    records_path: Option<&str>,
) -> Result<&'d [Value], String> {
    let (value, name) = match records_path {
        Some(path) => (
            json_path(document, path).map_err(|why| format!("`records_path` `{path}`: {why}"))?,
            format!("`records_path` `{path}`"),
        ),
        None => (document, "the body (no `records_path`)".to_owned()),
    };
    match value {
        Value::Array(items) => Ok(items),
        other => Err(format!(
            "{name} is {}, not an array of records",
            kind_of(other)
        )),
    }
}

/// The next cursor: absent, null or empty ends the pagination.
fn next_cursor(document: &Value, cursor_path: &str) -> Result<Option<String>, StepError> {
    let Ok(value) = json_path(document, cursor_path) else {
        return Ok(None);
    };
    match value {
        Value::Null => Ok(None),
        Value::String(text) if text.is_empty() => Ok(None),
        Value::String(text) => Ok(Some(text.clone())),
        Value::Number(number) => Ok(Some(number.to_string())),
        other => Err(StepError::new(format!(
            "`cursor_path` `{cursor_path}` is {}, not a string or a number",
            kind_of(other)
        ))),
    }
}

/// The `rel="next"` target of a `Link` header, resolved against the page's URL.
fn next_link(headers: &HeaderMap, page: &Url) -> Option<Url> {
    for value in headers.get_all(LINK) {
        let Ok(text) = value.to_str() else { continue };
        for link in text.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let Some(target) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else {
                continue;
            };
            let is_next = parts.any(|param| {
                let param = param.trim();
                param
                    .strip_prefix("rel=")
                    .map(|rel| {
                        rel.trim_matches('"')
                            .split_whitespace()
                            .any(|rel| rel.eq_ignore_ascii_case("next"))
                    })
                    .unwrap_or(false)
            });
            if is_next {
                return page.join(target).ok();
            }
        }
    }
    None
}

fn page_url(
    base: &Url,
    param: &String,
    size_param: Option<&String>,
    size: Option<u32>,
    number: u32,
) -> Url {
    let number = number.to_string();
    let size = size.map(|size| size.to_string());
    let mut params = vec![(param, &number)];
    if let (Some(size_param), Some(size)) = (size_param, &size) {
        params.push((size_param, size));
    }
    with_params(base, &params)
}

/// `base` with each parameter set (replacing one of the same name).
fn with_params(base: &Url, params: &[(&String, &String)]) -> Url {
    let mut url = base.clone();
    let kept: Vec<(String, String)> = base
        .query_pairs()
        .filter(|(name, _)| !params.iter().any(|(param, _)| *param == name))
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    {
        let mut query = url.query_pairs_mut();
        query.clear();
        for (name, value) in &kept {
            query.append_pair(name, value);
        }
        for (name, value) in params {
            query.append_pair(name, value);
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers_are_parsed_and_resolved() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            r#"<https://api.example.com/x?page=1>; rel="prev", </x?page=3>; rel="next""#
                .parse()
                .unwrap(),
        );
        let page = Url::parse("https://api.example.com/x?page=2").unwrap();
        assert_eq!(
            next_link(&headers, &page).unwrap().as_str(),
            "https://api.example.com/x?page=3"
        );
        headers.insert(LINK, r#"<https://a/x>; rel="prev""#.parse().unwrap());
        assert_eq!(next_link(&headers, &page), None);
    }

    #[test]
    fn params_replace_those_of_the_same_name() {
        let base = Url::parse("http://h/x?a=1&page=9").unwrap();
        let page = "page".to_owned();
        let two = "2".to_owned();
        assert_eq!(
            with_params(&base, &[(&page, &two)]).as_str(),
            "http://h/x?a=1&page=2"
        );
    }
}
