//! Who is asking: password hashes, session cookies, CSRF tokens, API tokens and roles.
//!
//! A session is a random 32-byte token in an HttpOnly, SameSite=Lax cookie; the database
//! keeps only its SHA-256 hash, with a per-session CSRF token that every POST form carries.
//! API requests carry `Authorization: Bearer TOKEN` and are never authenticated by cookie,
//! so they need no CSRF token.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::body::{Body, to_bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{TimeDelta, Utc};
use sha2::{Digest, Sha256};
use sluice_store::Role;

use crate::AppState;
use crate::error::{ApiError, AppError};

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "sluice_session";
/// How long a login lasts.
pub(crate) const SESSION_LIFETIME: TimeDelta = TimeDelta::hours(12);
/// A form bigger than this is not one of ours.
const MAX_FORM_BYTES: usize = 256 * 1024;

/// An argon2id hash (PHC string) of `password`, for `users.password_hash`.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|error| format!("making a salt: {error}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| format!("hashing the password: {error}"))
}

/// True when `password` matches the stored hash; a malformed hash matches nothing.
pub(crate) fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// 32 random bytes as 64 hex digits: a session token or CSRF token.
pub(crate) fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A new API token, shown once to whoever created it: `sluice_` and 64 hex digits.
pub fn new_api_token() -> String {
    format!("sluice_{}", random_token())
}

/// What the database keeps of a session or API token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Equal without an early exit, so the time taken says nothing about the secret.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The person (or API token) behind a request, put there by `require_session` or
/// `require_token`.
#[derive(Debug, Clone)]
pub(crate) struct CurrentUser {
    pub name: String,
    pub role: Role,
    /// `user:NAME` or `token:NAME`, as the audit log and `triggered_by` record it.
    pub actor: String,
    /// The session's CSRF token; empty for API tokens, which never post forms.
    pub csrf_token: String,
}

impl CurrentUser {
    pub(crate) fn require(&self, needed: Role) -> Result<(), AppError> {
        if self.role.allows(needed) {
            return Ok(());
        }
        Err(AppError::Forbidden(format!(
            "this needs the {needed} role; `{}` is a {}",
            self.name, self.role
        )))
    }

    pub(crate) fn can_operate(&self) -> bool {
        self.role.allows(Role::Operator)
    }

    pub(crate) fn is_admin(&self) -> bool {
        self.role.allows(Role::Admin)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // only routes behind `require_session` / `require_token` extract it
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or(AppError::Unauthorized)
    }
}

/// The value of the session cookie, if the request carries one.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The pages' gate: a live session or a redirect to the login page (which comes back here),
/// and on every POST the session's CSRF token in the form's `csrf` field.
pub(crate) async fn require_session(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    let session = match session_cookie(request.headers()) {
        Some(token) => {
            state
                .store
                .get_session(&token_hash(&token), Utc::now())
                .await?
        }
        None => None,
    };
    let Some(session) = session else {
        let wanted = request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str());
        return Ok(Redirect::to(&crate::paths::login(Some(wanted))).into_response());
    };
    let user = CurrentUser {
        actor: format!("user:{}", session.username),
        name: session.username,
        role: session.role,
        csrf_token: session.csrf_token,
    };
    let mut request = if request.method() == Method::POST {
        check_csrf(request, &user.csrf_token).await?
    } else {
        request
    };
    request.extensions_mut().insert(user);
    Ok(next.run(request).await)
}

/// Reads the form, checks its `csrf` field, and hands the same body on to the handler.
async fn check_csrf(request: Request, expected: &str) -> Result<Request, AppError> {
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| AppError::BadRequest("the form is too large".to_owned()))?;
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
    let sent = fields
        .iter()
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.as_str());
    if !sent.is_some_and(|token| same_secret(token, expected)) {
        return Err(AppError::Forbidden(
            "the form's security token is missing or out of date: reload the page and try again"
                .to_owned(),
        ));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The API's gate: `Authorization: Bearer TOKEN` naming a stored API token.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return Err(ApiError(AppError::Unauthorized));
    };
    let Some(record) = state
        .store
        .get_api_token(&token_hash(token))
        .await
        .map_err(|error| ApiError(error.into()))?
    else {
        return Err(ApiError(AppError::Unauthorized));
    };
    request.extensions_mut().insert(CurrentUser {
        actor: format!("token:{}", record.name),
        name: record.name,
        role: record.role,
        csrf_token: String::new(),
    });
    Ok(next.run(request).await)
}

/// `Set-Cookie` for a new session (`Secure` when the UI is served over HTTPS).
pub(crate) fn session_set_cookie(token: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        SESSION_LIFETIME.num_seconds(),
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that removes the session cookie.
pub(crate) fn session_clear_cookie(secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Where to go after logging in: only a path on this site, never `//elsewhere` or a URL.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.starts_with("/login") =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("correct horse").expect("hashing");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "wrong horse"));
        assert!(!verify_password("not a hash", "correct horse"));
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let token = random_token();
        assert_eq!(token.len(), 64);
        assert_ne!(token, random_token());
        assert_eq!(token_hash(&token).len(), 64);
        assert_ne!(token_hash(&token), token);
        assert!(new_api_token().starts_with("sluice_"));
    }

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert_eq!(safe_next(Some("/dags/etl?x=1")), "/dags/etl?x=1");
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil",
            "/login",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "theme=dark; sluice_session=abc; x=y"
                .parse()
                .expect("valid"),
        );
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc"));
        assert!(session_cookie(&HeaderMap::new()).is_none());
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("a", "ab"));
    }
}
