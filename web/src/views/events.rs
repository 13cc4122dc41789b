//! The audit log (who did what to which DAG or run, newest first) and, for admins, who has
//! access.

use askama::Template;
use askama_web::WebTemplate;
use sluice_store::{EventFilter, EventRecord, Role, Store};

use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::format::time;
use crate::paths;

/// Events per page.
const PAGE: u32 = 50;

#[derive(Template, WebTemplate)]
#[template(path = "events.html")]
pub(crate) struct EventsPage {
    refresh: bool,
    pub(crate) user: Option<CurrentUser>,
    events: Vec<EventRow>,
    older_href: Option<String>,
}

struct EventRow {
    at: String,
    actor: String,
    action: String,
    target: String,
    /// The DAG or run acted on.
    href: Option<String>,
    details: String,
}

pub(crate) async fn events_page(
    store: &dyn Store,
    before_id: Option<i64>,
) -> Result<EventsPage, AppError> {
    let events = store
        .list_events(&EventFilter {
            before_id,
            limit: PAGE,
        })
        .await?;
    let older_href = (events.len() == PAGE as usize)
        .then(|| {
            events
                .last()
                .map(|last| format!("/events?before={}", last.id))
        })
        .flatten();
    Ok(EventsPage {
        refresh: false,
        user: None,
        events: events.iter().map(EventRow::new).collect(),
        older_href,
    })
}

impl EventRow {
    fn new(event: &EventRecord) -> Self {
        // targets are `DAG` or `DAG/RUN`; DAG ids cannot hold a `/`
        let href = match event.target.split_once('/') {
            Some((dag_id, run_id)) => paths::run(dag_id, run_id),
            None => paths::dag(&event.target),
        };
        EventRow {
            at: time(event.at),
            actor: event.actor.clone(),
            action: event.action.clone(),
            target: event.target.clone(),
            href: Some(href),
            details: event.details.to_string(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "access.html")]
pub(crate) struct AccessPage {
    refresh: bool,
    pub(crate) user: Option<CurrentUser>,
    /// Name, role and creation time.
    users: Vec<(String, Role, String)>,
    tokens: Vec<(String, Role, String)>,
}

/// Users and API tokens (never a hash); the caller checks the admin role.
pub(crate) async fn access_page(store: &dyn Store) -> Result<AccessPage, AppError> {
    let users = store.list_users().await?;
    let tokens = store.list_api_tokens().await?;
    Ok(AccessPage {
        refresh: false,
        user: None,
        users: users
            .into_iter()
            .map(|user| (user.username, user.role, time(user.created_at)))
            .collect(),
        tokens: tokens
            .into_iter()
            .map(|token| (token.name, token.role, time(token.created_at)))
            .collect(),
    })
}
