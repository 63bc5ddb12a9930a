//! `warden audit`.
