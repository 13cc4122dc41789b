//! The viewer's display settings: the timezone times are shown in, kept in a cookie.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::Request;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::auth::{CurrentUser, safe_next};
use crate::error::AppError;
use crate::format::{TIMEZONE, timezone};

const TIMEZONE_COOKIE: &str = "sluice_tz";

/// Answers the request with times in the timezone of the viewer's cookie (UTC without one).
pub(crate) async fn with_timezone(request: Request, next: Next) -> Response {
    let tz = chosen(request.headers()).unwrap_or(Tz::UTC);
    TIMEZONE.scope(tz, next.run(request)).await
}

fn chosen(headers: &HeaderMap) -> Option<Tz> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == TIMEZONE_COOKIE)
        .and_then(|(_, value)| value.parse().ok())
}

#[derive(Template, WebTemplate)]
#[template(path = "settings.html")]
pub(crate) struct SettingsPage {
    refresh: bool,
    user: Option<CurrentUser>,
    current: String,
    zones: Vec<&'static str>,
    back: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct SettingsQuery {
    back: Option<String>,
}

pub(crate) async fn form(
    user: CurrentUser,
    axum::extract::Query(query): axum::extract::Query<SettingsQuery>,
) -> SettingsPage {
    page(user, safe_next(query.back.as_deref()), None)
}

#[derive(Deserialize)]
pub(crate) struct SettingsForm {
    timezone: String,
    back: Option<String>,
}

pub(crate) async fn save(
    user: CurrentUser,
    Form(form): Form<SettingsForm>,
) -> Result<Response, AppError> {
    let back = safe_next(form.back.as_deref());
    let Ok(tz) = form.timezone.trim().parse::<Tz>() else {
        let message = format!(
            "`{}` is not an IANA timezone (like Europe/Berlin)",
            form.timezone
        );
        return Ok((
            axum::http::StatusCode::BAD_REQUEST,
            page(user, back, Some(message)),
        )
            .into_response());
    };
    let cookie = format!(
        "{TIMEZONE_COOKIE}={}; Path=/; SameSite=Lax; Max-Age=31536000",
        tz.name()
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&back)).into_response())
}

fn page(user: CurrentUser, back: String, error: Option<String>) -> SettingsPage {
    SettingsPage {
        refresh: false,
        user: Some(user),
        current: timezone().name().to_owned(),
        zones: chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect(),
        back,
        error,
    }
}
