//! What a `COPY ... TO STDOUT` sends, read from the server's parse tree: a query whose columns
//! are the COPY's (so the gateway can ask the server for their types before the data flows)
//! and the options that shape each line (format, delimiter, NULL marker, quoting, header).

use pg_query::protobuf::{self, node::Node as N};

/// The line format of COPY data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    Binary,
}

/// A `COPY ... TO STDOUT`: how to learn its columns' types, and how its lines are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOut {
    /// A SELECT with the COPY's columns (its table's, or its query's).
    pub select: String,
    pub format: CopyFormat,
    pub delimiter: char,
    pub null: String,
    pub quote: char,
    pub escape: char,
    /// The first line is a header of column names.
    pub header: bool,
}

/// The COPY TO STDOUT a statement node is, if it is one.
pub fn copy_out(node: &protobuf::Node) -> Option<CopyOut> {
    let Some(N::CopyStmt(c)) = &node.node else {
        return None;
    };
    if c.is_from || c.is_program || !c.filename.is_empty() {
        return None;
    }
    let select = match (&c.query, &c.relation) {
        (Some(q), _) => q.node.as_ref()?.deparse(Default::default()).ok()?,
        (None, Some(rel)) => {
            let cols: Vec<String> = c
                .attlist
                .iter()
                .filter_map(|a| match &a.node {
                    Some(N::String(s)) => Some(quote_ident(&s.sval)),
                    _ => None,
                })
                .collect();
            let cols = if cols.is_empty() {
                "*".to_string()
            } else {
                cols.join(", ")
            };
            let table = match rel.schemaname.as_str() {
                "" => quote_ident(&rel.relname),
                s => format!("{}.{}", quote_ident(s), quote_ident(&rel.relname)),
            };
            format!("SELECT {cols} FROM {table}")
        }
        (None, None) => return None,
    };
    let mut out = CopyOut {
        select,
        format: CopyFormat::Text,
        delimiter: '\t',
        null: "\\N".into(),
        quote: '"',
        escape: '"',
        header: false,
    };
    let (mut delimiter, mut null, mut escape) = (None, None, None);
    for o in &c.options {
        let Some(N::DefElem(d)) = &o.node else {
            continue;
        };
        let arg = d.arg.as_ref().and_then(|a| a.node.as_ref());
        let text = match arg {
            Some(N::String(s)) => Some(s.sval.clone()),
            _ => None,
        };
        let first = || text.as_ref().and_then(|t| t.chars().next());
        match d.defname.as_str() {
            "format" => {
                out.format = match text.as_deref() {
                    Some("csv") => CopyFormat::Csv,
                    Some("binary") => CopyFormat::Binary,
                    _ => CopyFormat::Text,
                }
            }
            "delimiter" => delimiter = first(),
            "null" => null = text.clone(),
            "quote" => out.quote = first().unwrap_or('"'),
            "escape" => escape = first(),
            "header" => {
                out.header = match arg {
                    None => true,
                    Some(N::Boolean(b)) => b.boolval,
                    Some(N::Integer(i)) => i.ival != 0,
                    Some(N::String(s)) => !matches!(s.sval.as_str(), "false" | "off" | "0"),
                    _ => true,
                }
            }
            _ => {}
        }
    }
    let csv = out.format == CopyFormat::Csv;
    out.delimiter = delimiter.unwrap_or(if csv { ',' } else { '\t' });
    out.null = null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() });
    out.escape = escape.unwrap_or(out.quote);
    Some(out)
}

/// An identifier, always quoted (the parse tree holds names as the server resolved them).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn read(sql: &str) -> Option<CopyOut> {
        let parsed = pg_query::parse(sql, 0).unwrap();
        copy_out(parsed.protobuf.stmts[0].stmt.as_ref().unwrap())
    }

    #[test]
    fn reads_the_columns_and_options() {
        let c = read("COPY public.Cards (id, \"Pan\") TO STDOUT").unwrap();
        assert_eq!(c.select, "SELECT \"id\", \"Pan\" FROM \"public\".\"cards\"");
        assert_eq!(
            (c.format, c.delimiter, c.null.as_str()),
            (CopyFormat::Text, '\t', "\\N")
        );
        let c = read("COPY cards TO STDOUT WITH CSV HEADER DELIMITER ';'").unwrap();
        assert_eq!(c.select, "SELECT * FROM \"cards\"");
        assert_eq!(
            (c.format, c.delimiter, c.header, c.null.as_str()),
            (CopyFormat::Csv, ';', true, "")
        );
        let c =
            read("COPY (SELECT pan FROM cards WHERE id = 1) TO STDOUT (FORMAT binary)").unwrap();
        assert_eq!(c.format, CopyFormat::Binary);
        assert!(
            c.select.starts_with("SELECT pan FROM cards"),
            "{}",
            c.select
        );
        assert!(read("COPY cards FROM STDIN").is_none());
        assert!(read("COPY cards TO '/tmp/x'").is_none());
    }
}
