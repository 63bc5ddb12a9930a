//! `warden token`.
