//! `events`: runc's event objects, `{"type": "stats"|"oom", "id": ..., "data": ...}`.

use serde::Serialize;

/// One event line.
#[derive(Debug, Serialize)]
pub struct Event<T: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
}
