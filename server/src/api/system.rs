//! `GET /api/system`: the machine's latest figures, as the System page
//! shows them and `loralab system` prints them.

use axum::extract::State;
use axum::Json;

use crate::state::SharedState;

pub async fn show(State(state): State<SharedState>) -> Json<app::system_dto::SystemView> {
    Json(state.system_view())
}
