//! The event stream: runs starting, moving records and finishing, and sources changing status,
//! as Server-Sent Events.

use std::convert::Infallible;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use tokio::sync::broadcast::error::RecvError;

use super::*;

/// Server-Sent Events, one JSON document per event: `run_started {run_id, source}`,
/// `run_progress {run_id, stream, records}` (about once a second while records move),
/// `run_finished {run_id, status}` (the run history's word), `source_status {source, status}`,
/// and `install_progress {source, step, status}` while a registered template is installed.
/// The stream stays open until the client leaves or the server stops; a client that falls
/// more than 1,024 events behind misses the oldest (a `lagged` event says how many). A caller
/// gets only the events of sources it sees.
#[utoipa::path(get, path = "/api/events", tag = "events",
    responses((status = 200, description = "An event stream", content_type = "text/event-stream", body = String)))]
pub(super) async fn events(State(app): State<Arc<App>>, caller: Caller) -> Response {
    let rx = app.runs.subscribe();
    let stop = app.shutdown.subscribe();
    let viewer = (!caller.sees_all()).then(|| caller.viewer());
    let state = (rx, stop, app, viewer);
    let stream =
        futures_util::stream::unfold(state, |(mut rx, mut stop, app, viewer)| async move {
            if *stop.borrow() {
                return None;
            }
            let sse = loop {
                tokio::select! {
                    _ = stop.changed() => return None,
                    got = rx.recv() => match got {
                        Ok(event) => {
                            let hidden = viewer.as_ref().is_some_and(|v| {
                                event
                                    .source
                                    .as_deref()
                                    .is_some_and(|s| !v.sees_name(&app.loaded().sources, s))
                            });
                            if hidden {
                                continue;
                            }
                            break SseEvent::default()
                                .event(event.kind)
                                .data(event.data.to_string());
                        }
                        Err(RecvError::Lagged(n)) => break SseEvent::default()
                            .event("lagged")
                            .data(serde_json::json!({"missed": n}).to_string()),
                        Err(RecvError::Closed) => return None,
                    },
                }
            };
            Some((Ok::<_, Infallible>(sse), (rx, stop, app, viewer)))
        });

    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
