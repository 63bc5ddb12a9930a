//! `allow-all`: allows every command and never masks. For targets that explicitly want no
//! checks (audit and recording still apply). Its config string is ignored.

use warden_policy::{Policy, export_policy};

/// The policy: no state.
struct AllowAll;

impl Policy for AllowAll {
    fn init(_config: &str) -> Result<Self, String> {
        Ok(AllowAll)
    }
}

export_policy!(AllowAll);
