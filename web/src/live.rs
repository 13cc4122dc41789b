//! Live updates: a running attempt's log streamed as server-sent events, and the small
//! script (`static/live.js`) that appends them to the page.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use sluice_core::AttemptState;
use sluice_store::{Store, UNMAPPED};

use crate::AppState;
use crate::error::AppError;
use crate::views::find_run;

/// How often a followed log is read again.
const POLL: Duration = Duration::from_millis(400);

#[derive(Deserialize)]
pub(crate) struct StreamQuery {
    map_index: Option<i32>,
    /// The last chunk the page already shows.
    after: Option<i64>,
}

/// `event: chunk` (`id` = the chunk's seq, `data` = its text as a JSON string) for every new
/// chunk, then one `event: end` (`data` = the attempt's state) once the attempt has ended and
/// every chunk was sent. A reconnecting browser resumes after `Last-Event-ID`.
pub(crate) async fn log_stream(
    State(state): State<AppState>,
    Path((dag_id, run_id, task_id, try_text)): Path<(String, String, String, String)>,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let no_such_attempt =
        || AppError::NotFound(format!("task `{task_id}` has no try `{try_text}`"));
    let try_number: u32 = try_text.parse().map_err(|_| no_such_attempt())?;
    let map_index = query.map_index.unwrap_or(UNMAPPED);
    let store = state.store.clone();
    let run = find_run(store.as_ref(), &dag_id, &run_id).await?;
    let attempt = store
        .attempts(run.pk)
        .await?
        .into_iter()
        .find(|a| a.task_id == task_id && a.map_index == map_index && a.try_number == try_number)
        .ok_or_else(no_such_attempt)?;
    let resumed = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    let follow = Follow {
        store,
        run_pk: run.pk,
        attempt_id: attempt.id,
        after: resumed.or(query.after).unwrap_or(0),
        ended: false,
    };
    let events = futures::stream::unfold(follow, |mut follow| async move {
        let event = follow.next_event().await?;
        Some((Ok(event), follow))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Where a followed log stands.
struct Follow {
    store: Arc<dyn Store>,
    run_pk: i64,
    attempt_id: i64,
    after: i64,
    ended: bool,
}

impl Follow {
    /// The next event, waiting for one; `None` once `end` was sent.
    async fn next_event(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        loop {
            // the state first: an attempt seen ended has written its last chunk already
            let state = match self.attempt_state().await {
                Ok(state) => state,
                Err(error) => return Some(self.fail(&error)),
            };
            let chunks = match self.store.read_log(self.attempt_id, self.after).await {
                Ok(chunks) => chunks,
                Err(error) => return Some(self.fail(&error)),
            };
            if let Some(last) = chunks.last() {
                self.after = last.seq;
                let text: String = chunks.iter().map(|chunk| chunk.content.as_str()).collect();
                let event = Event::default()
                    .event("chunk")
                    .id(self.after.to_string())
                    .json_data(text)
                    .unwrap_or_else(|_| Event::default().event("chunk"));
                return Some(event);
            }
            if state != Some(AttemptState::Running) {
                self.ended = true;
                let name = state.map_or("gone", AttemptState::as_str);
                return Some(Event::default().event("end").data(name));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn attempt_state(&self) -> Result<Option<AttemptState>, sluice_store::StoreError> {
        Ok(self
            .store
            .attempts(self.run_pk)
            .await?
            .into_iter()
            .find(|attempt| attempt.id == self.attempt_id)
            .map(|attempt| attempt.state))
    }

    fn fail(&mut self, error: &sluice_store::StoreError) -> Event {
        tracing::warn!(%error, attempt_id = self.attempt_id, "log stream stopped");
        self.ended = true;
        Event::default().event("end").data("error")
    }
}

const SCRIPT: &str = include_str!("../static/live.js");

pub(crate) async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        SCRIPT,
    )
}
