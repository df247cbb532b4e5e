//! The web playground at `/`: one page, compiled into the binary with its script and style
//! (no CDN, no build step), where a person picks a bundled model and tries it — an image to
//! classify or caption, a prompt to continue — through the public HTTP and OpenAI routes,
//! and watches the server work in a stats panel fed by `GET /v1/playground/stats`. The page
//! and its assets are public; the stats feed and every route the page calls need the API
//! key when keys are configured (the page asks for one). `--no-playground` turns it off.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::http::authorize;
use crate::metrics::LiveModelStats;
use crate::state::AppState;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// The page, its assets and its stats feed.
pub fn router(state: &AppState) -> Router<AppState> {
    let feed = Router::new()
        .route("/v1/playground/stats", get(stats))
        .route_layer(from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/playground/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/playground/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .merge(feed)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

/// The stats feed: every ready model with its task and live figures.
#[derive(Debug, Serialize)]
pub struct LiveStats {
    /// Where the efficiency figures come from: `measured`, `estimated` or `none`.
    pub energy: &'static str,
    pub models: Vec<LiveModel>,
}

#[derive(Debug, Serialize)]
pub struct LiveModel {
    /// `classify`, `language-model` or `caption`.
    pub task: &'static str,
    #[serde(flatten)]
    pub stats: LiveModelStats,
}

async fn stats(State(state): State<AppState>) -> Json<LiveStats> {
    let live = state.metrics.live();
    let models = state
        .ready_models()
        .into_iter()
        .filter_map(|handle| {
            let stats = live.iter().find(|s| {
                s.model == handle.name
                    && s.version == handle.version
                    && s.backend == handle.backend.name()
            })?;
            Some(LiveModel {
                task: handle.task().name(),
                stats: stats.clone(),
            })
        })
        .collect();
    Json(LiveStats {
        energy: state.metrics.energy_kind(),
        models,
    })
}
