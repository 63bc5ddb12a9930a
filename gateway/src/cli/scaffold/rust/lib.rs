//! `__POLICY_NAME__`: a Warden policy. Edit `check` (and `mask_rows`) to decide; keep it a pure
//! function of its inputs. Build with `./build.sh`, test with the command it prints.

use warden_policy::{Command, Policy, Session, Verdict, export_policy};

struct __TYPE_NAME__;

impl Policy for __TYPE_NAME__ {
    fn init(_config: &str) -> Result<Self, String> {
        Ok(__TYPE_NAME__)
    }

    fn check(&self, _session: &Session, command: &Command) -> Verdict {
        match command {
            Command::Sql(sql) if sql.kind == "drop" => {
                Verdict::Deny("DROP is not allowed here".to_string())
            }
            _ => Verdict::Allow,
        }
    }
}

export_policy!(__TYPE_NAME__);
