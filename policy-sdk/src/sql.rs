//! Small helpers over the host-parsed [`Sql`](crate::Sql) statement.
