//! Live reads of the audit store for auditors (`[admin] auditor_groups`): the gateway holds the
//! database locked, so `warden sessions`, `replay`, `audit export|verify|report --admin URL`
//! read through here instead of anyone copying the file. Every read runs on its own snapshot
//! while the gateway appends.
//!
//! | route                                   | answer                                          |
//! |-----------------------------------------|-------------------------------------------------|
//! | `GET /v1/audit/verify`                  | the chain report (JSON)                         |
//! | `GET /v1/audit/events?QUERY`            | an export: JSON lines or CSV (`format=csv`)     |
//! | `GET /v1/audit/report?from=&to=`        | the evidence report (JSON; `format=markdown`)   |
//! | `GET /v1/sessions`                      | `{"sessions":[SessionRecord]}`                  |
//! | `GET /v1/sessions/{id}`                 | the session's record                            |
//! | `GET /v1/sessions/{id}/recording`       | its recording's JSON lines                      |
//!
//! Export query keys: `format`, `from_seq`, `from`, `to` (RFC 3339), `session`, `actor`,
//! `target`, `verdict`, `type` (repeatable), `shadow_diff`, `raw` (no CSV formula guard).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::{AdminState, Reply, error, reply, report_json};
use crate::audit::{AuditError, ExportFilter, ExportFormat, ExportOptions, Timestamp};
use crate::identity::Principal;

/// The audit reads, after authentication.
pub(super) enum AuditRoute<'a> {
    Verify,
    Events,
    Report,
    Sessions,
    Session(&'a str),
    Recording(&'a str),
}

/// May this principal read the audit trail?
pub(super) fn is_auditor(state: &AdminState, principal: &Principal) -> bool {
    principal.groups.iter().any(|g| state.auditors.contains(g))
}

pub(super) async fn handle(
    state: &AdminState,
    principal: &Principal,
    route: AuditRoute<'_>,
    query: Option<&str>,
) -> Reply {
    if !is_auditor(state, principal) {
        let message = format!(
            "`{}` may not read the audit trail (not in [admin] auditor_groups)",
            principal.subject
        );
        return error(StatusCode::FORBIDDEN, &message);
    }
    let audit = state.audit.clone();
    let query = query.unwrap_or("").to_owned();
    let owned = match route {
        AuditRoute::Verify => Owned::Verify,
        AuditRoute::Events => Owned::Events,
        AuditRoute::Report => Owned::Report,
        AuditRoute::Sessions => Owned::Sessions,
        AuditRoute::Session(id) => Owned::Session(id.to_owned()),
        AuditRoute::Recording(id) => Owned::Recording(id.to_owned()),
    };
    // Reads block on the disk: off the runtime's workers.
    let answer = tokio::task::spawn_blocking(move || read(&audit, owned, &query)).await;
    match answer {
        Ok(Ok(reply)) => reply,
        Ok(Err(Failure::Bad(message))) => error(StatusCode::BAD_REQUEST, &message),
        Ok(Err(Failure::NotFound(message))) => error(StatusCode::NOT_FOUND, &message),
        Ok(Err(Failure::Audit(err))) => error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    }
}

enum Owned {
    Verify,
    Events,
    Report,
    Sessions,
    Session(String),
    Recording(String),
}

enum Failure {
    Bad(String),
    NotFound(String),
    Audit(AuditError),
}

impl From<AuditError> for Failure {
    fn from(err: AuditError) -> Self {
        Failure::Audit(err)
    }
}

fn read(audit: &crate::audit::AuditStore, route: Owned, query: &str) -> Result<Reply, Failure> {
    match route {
        Owned::Verify => Ok(reply(StatusCode::OK, &report_json(&audit.verify()?))),
        Owned::Sessions => {
            let mut sessions = audit.sessions()?;
            sessions.sort_by_key(|s| s.start_seq);
            Ok(reply(StatusCode::OK, &json!({ "sessions": sessions })))
        }
        Owned::Session(id) => match audit.session(&id)? {
            Some(record) => Ok(reply(StatusCode::OK, &json!(record))),
            None => Err(Failure::NotFound(format!("no session `{id}`"))),
        },
        Owned::Recording(id) => {
            let chunks = audit.recording(&id)?;
            if chunks.is_empty() && audit.session(&id)?.is_none() {
                return Err(Failure::NotFound(format!("no session `{id}`")));
            }
            Ok(body(chunks.concat(), "application/x-ndjson"))
        }
        Owned::Events => {
            let options = export_options(query)?;
            let mut out = Vec::new();
            audit.export_with(&options, &mut out, &mut |_| {})?;
            let kind = match options.format {
                ExportFormat::Jsonl => "application/x-ndjson",
                ExportFormat::Csv => "text/csv; charset=utf-8",
            };
            Ok(body(out, kind))
        }
        Owned::Report => {
            let (filter, markdown) = report_query(query)?;
            let report = crate::audit::report::build(audit, &filter, None)?;
            if markdown {
                Ok(body(
                    report.markdown().into_bytes(),
                    "text/markdown; charset=utf-8",
                ))
            } else {
                Ok(reply(StatusCode::OK, &json!(report)))
            }
        }
    }
}

fn body(bytes: Vec<u8>, content_type: &'static str) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(bytes)));
    let headers = reply.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    reply
}

fn time(key: &str, value: &str) -> Result<Timestamp, Failure> {
    humantime::parse_rfc3339_weak(value)
        .map(Timestamp::from_system_time)
        .map_err(|e| Failure::Bad(format!("`{key}` must be an RFC 3339 time: {e}")))
}

/// The export options a query string asks for.
fn export_options(query: &str) -> Result<ExportOptions, Failure> {
    let mut options = ExportOptions {
        guard_formulas: true,
        ..ExportOptions::default()
    };
    let f = &mut options.filter;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.into_owned();
        match &*key {
            "format" => {
                options.format = match value.as_str() {
                    "jsonl" => ExportFormat::Jsonl,
                    "csv" => ExportFormat::Csv,
                    _ => return Err(Failure::Bad("`format` is jsonl or csv".into())),
                }
            }
            "raw" => options.guard_formulas = false,
            "from_seq" => {
                f.from_seq = Some(
                    value
                        .parse()
                        .map_err(|_| Failure::Bad("`from_seq` is a number".into()))?,
                )
            }
            "from" => f.from = Some(time("from", &value)?),
            "to" => f.to = Some(time("to", &value)?),
            "session" => f.session = Some(value),
            "actor" => f.actor = Some(value),
            "target" => f.target = Some(value),
            "verdict" => f.verdict = Some(value),
            "type" => f.kinds.push(value),
            "shadow_diff" => {
                f.shadow_diff = match &*value {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(Failure::Bad("`shadow_diff` is 1 or 0".into())),
                }
            }
            other => return Err(Failure::Bad(format!("unknown query key `{other}`"))),
        }
    }
    Ok(options)
}

/// A report's period and format.
fn report_query(query: &str) -> Result<(ExportFilter, bool), Failure> {
    let mut filter = ExportFilter::default();
    let mut markdown = false;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "from" => filter.from = Some(time("from", &value)?),
            "to" => filter.to = Some(time("to", &value)?),
            "format" => markdown = value == "markdown",
            other => return Err(Failure::Bad(format!("unknown query key `{other}`"))),
        }
    }
    Ok((filter, markdown))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn export_queries_parse_and_unknown_keys_are_refused() {
        let options = export_options(
            "format=csv&actor=agent%207&from=2026-12-01T00:00:00Z&type=command&type=masked",
        )
        .unwrap_or_else(|_| panic!("parse"));
        assert_eq!(options.format, ExportFormat::Csv);
        assert_eq!(options.filter.actor.as_deref(), Some("agent 7"));
        assert_eq!(options.filter.kinds, ["command", "masked"]);
        assert!(options.filter.from.is_some());
        assert!(export_options("nope=1").is_err());
        assert!(export_options("from=yesterday").is_err());
    }
}
