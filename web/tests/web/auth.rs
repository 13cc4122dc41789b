//! Logging in and out, and what each role may do.

use axum::http::{StatusCode, header};
use sluice_store::Role;

use crate::support::{PASSWORD, TestApp, dag, sync};

#[tokio::test]
async fn anonymous_visitors_are_sent_to_the_login_page_and_back() {
    let app = TestApp::anonymous().await;
    app.create_user("vic", Role::Viewer).await;
    sync(app.store.as_ref(), vec![dag("etl", None)], Vec::new()).await;

    for path in ["/", "/dags/etl", "/dags/etl/runs/r", "/events"] {
        let answer = app.get(path).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "GET {path}");
        assert!(answer.location().starts_with("/login"), "GET {path}");
    }
    assert_eq!(
        app.get("/dags/etl").await.location(),
        "/login?next=%2Fdags%2Fetl"
    );
    let form = app.page("/login?next=%2Fdags%2Fetl").await;
    assert!(form.contains("value=\"/dags/etl\""), "{form}");
    assert!(!form.contains("Log out"), "{form}");
    // the login page, the health check and the stylesheet need no login
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(app.get("/static/style.css").await.status, StatusCode::OK);

    let (cookie, csrf) = app.login_form().await;
    let fields = [
        ("username", "vic"),
        ("password", PASSWORD),
        ("next", "/dags/etl"),
        ("csrf", csrf.as_str()),
    ];
    let body = serde_urlencoded::to_string(fields).unwrap();
    let login = app
        .send(
            axum::http::Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, format!("sluice_login={cookie}"))
                .body(axum::body::Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
    assert_eq!(login.location(), "/dags/etl");

    // the same form without its cookie (as posted from another site) logs nobody in
    let forged = app
        .send_form(
            "/login",
            &[
                ("username", "vic"),
                ("password", PASSWORD),
                ("csrf", csrf.as_str()),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    assert!(
        forged.body.contains("expired or came from elsewhere"),
        "{}",
        forged.body
    );
    let session_set = forged
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .any(|value| value.to_str().unwrap_or("").starts_with("sluice_session="));
    assert!(!session_set);
}

#[tokio::test]
async fn session_cookie_is_http_only_and_same_site_and_logout_ends_it() {
    let app = TestApp::anonymous().await;
    app.create_user("vic", Role::Viewer).await;

    let login = app.login("vic", PASSWORD).await;
    let cookie = login
        .headers
        .get(header::SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .expect("a session cookie")
        .to_owned();
    assert!(cookie.starts_with("sluice_session="), "{cookie}");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    assert!(cookie.contains("; SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("; Path=/"), "{cookie}");
    let home = app.page("/").await;
    assert!(
        home.contains("vic"),
        "the page names who is logged in: {home}"
    );

    let logout = app.post("/logout", &[]).await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    assert_eq!(logout.location(), "/login");
    let cleared = logout
        .headers
        .get(header::SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .expect("the cookie is cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // the old cookie no longer opens anything
    assert_eq!(app.get("/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn wrong_password_or_unknown_user_is_refused_with_the_form_again() {
    let app = TestApp::anonymous().await;
    app.create_user("vic", Role::Viewer).await;

    for (username, password) in [("vic", "wrong"), ("nobody", PASSWORD)] {
        let answer = app.login(username, password).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{username}");
        assert!(
            answer.body.contains("Wrong username or password."),
            "{}",
            answer.body
        );
        let session_set = answer
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .any(|value| value.to_str().unwrap_or("").starts_with("sluice_session="));
        assert!(!session_set, "no session for a failed login");
    }
    assert_eq!(app.get("/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_post_without_the_sessions_csrf_token_is_refused() {
    let app = TestApp::spawn().await;

    let missing = app.post_without_csrf("/logout", &[]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN, "{}", missing.body);
    assert!(missing.body.contains("security token"), "{}", missing.body);
    let wrong = app.post_without_csrf("/logout", &[("csrf", "0000")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    // still logged in: neither post did anything
    assert_eq!(app.get("/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn login_page_escapes_what_was_typed() {
    let app = TestApp::anonymous().await;
    let answer = app.login("<script>alert(1)</script>", "x").await;
    assert!(!answer.body.contains("<script>alert"), "{}", answer.body);
    assert!(answer.body.contains("&#60;script&#62;"), "{}", answer.body);
}

#[tokio::test]
async fn only_admins_see_who_has_access_and_never_a_hash() {
    let admin = TestApp::spawn_as(Role::Admin).await;
    admin.create_user("vic", Role::Viewer).await;
    admin.api_token(Role::Operator).await;
    let html = admin.page("/access").await;
    assert!(html.contains("<td>vic</td><td>viewer</td>"), "{html}");
    assert!(
        html.contains("<td>operator-token</td><td>operator</td>"),
        "{html}"
    );
    assert!(!html.contains("$argon2"), "{html}");
    assert!(admin.page("/").await.contains("href=\"/access\""));

    let operator = TestApp::with_store(admin.store.clone(), tempfile::tempdir().unwrap());
    operator.create_user("olga", Role::Operator).await;
    operator.login("olga", PASSWORD).await;
    assert_eq!(operator.get("/access").await.status, StatusCode::FORBIDDEN);
    assert!(!operator.page("/").await.contains("href=\"/access\""));
}
