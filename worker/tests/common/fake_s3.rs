//! A fake S3 on loopback for the tests of `object_store` globs (bucket `drops`, path-style):
//! `object_store` reads S3 settings from `AWS_*` variables only, so a test that uses it runs
//! its own binary again with `AWS_ENDPOINT` pointing here (see `child_env`).

/// The variables that point `object_store` at the fake S3 at `endpoint`.
pub fn child_env(endpoint: &str) -> [(&'static str, String); 5] {
    [
        ("AWS_ENDPOINT", endpoint.to_owned()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
    ]
}

/// Just enough of S3 for `object_store`: ListObjectsV2 and GetObject, path-style.
pub async fn serve(objects: &'static [(&'static str, &'static str)]) -> String {
    use axum::extract::{Path, Query};
    use axum::http::header;
    use axum::response::IntoResponse;
    use axum::routing::get;
    use std::collections::HashMap;

    let list = move |Query(query): Query<HashMap<String, String>>| async move {
        let prefix = query.get("prefix").cloned().unwrap_or_default();
        let contents: String = objects
            .iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .map(|(key, body)| {
                format!(
                    "<Contents><Key>{key}</Key><LastModified>2024-05-06T00:00:00.000Z</LastModified><ETag>\"e\"</ETag><Size>{}</Size></Contents>",
                    body.len()
                )
            })
            .collect();
        (
            [(header::CONTENT_TYPE, "application/xml")],
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>drops</Name><Prefix>{prefix}</Prefix><IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"
            ),
        )
    };
    let object = move |Path(key): Path<String>| async move {
        match objects.iter().find(|(name, _)| *name == key) {
            Some((_, body)) => (
                [
                    (header::ETAG, "\"e\""),
                    (header::LAST_MODIFIED, "Mon, 06 May 2024 00:00:00 GMT"),
                ],
                *body,
            )
                .into_response(),
            None => axum::http::StatusCode::NOT_FOUND.into_response(),
        }
    };
    let router = axum::Router::new()
        .route("/drops", get(list))
        .route("/drops/", get(list))
        .route("/drops/{*key}", get(object));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}
