//! Reads a whole result in PostgreSQL's binary format (tokio-postgres asks for binary results
//! for every column) and prints `rows bytes unmasked seconds`: the binary half of the large-read
//! benchmark in `gateway/benches/pgbench.sh` (psql reads the text half). `unmasked` counts
//! rows in which one of the benchmark table's card numbers arrived in clear.
//!
//!     cargo run --release --example bigread -- CONNINFO 'SELECT ... FROM big_read'

use futures_util::{StreamExt, pin_mut};
use tokio_postgres::types::{FromSql, Type};

/// A value's bytes as they arrived.
struct Raw<'a>(&'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

const PANS: [&[u8]; 3] = [
    b"4111 1111 1111 1111",
    b"5500005555555559",
    b"6011111111111117",
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(conninfo), Some(sql)) = (args.next(), args.next()) else {
        eprintln!("usage: bigread CONNINFO SQL");
        std::process::exit(2);
    };
    let (client, conn) = tokio_postgres::connect(&conninfo, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let start = std::time::Instant::now();
    let stream = client
        .query_raw(
            sql.as_str(),
            std::iter::empty::<&(dyn tokio_postgres::types::ToSql + Sync)>(),
        )
        .await?;
    pin_mut!(stream);
    let (mut rows, mut bytes, mut unmasked) = (0u64, 0u64, 0u64);
    while let Some(row) = stream.next().await {
        let row = row?;
        rows += 1;
        let mut clear = false;
        for i in 0..row.len() {
            if let Some(Raw(v)) = row.try_get::<_, Option<Raw>>(i)? {
                bytes += v.len() as u64;
                clear |= PANS.iter().any(|p| v.windows(p.len()).any(|w| w == *p));
            }
        }
        unmasked += u64::from(clear);
    }
    println!(
        "{rows} {bytes} {unmasked} {:.3}",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
