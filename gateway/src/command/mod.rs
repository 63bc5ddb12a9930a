//! Commands as policies see them, built from protocol requests: SQL statements, shell lines,
//! HTTP requests.
