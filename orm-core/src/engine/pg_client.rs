//! The PostgreSQL client: tokio-postgres, driven on the calling thread.
//!
//! Every call blocks until its reply, as a synchronous driver does, but the connection is ours
//! to poll, so two requests can share one round trip ([`PgClient::query_each`] sends `BEGIN`
//! and a query together, which is how a transaction begun by a session costs no round trip of
//! its own), a request can be sent without waiting for its reply ([`PgClient::send`]), and a
//! result is handed over row by row as it is read, in one call into the runtime (see
//! ARCHITECTURE.md, "Transactions on the wire").

use std::future::Future;
use std::pin::{pin, Pin};
use std::task::Poll;

use futures_util::TryStreamExt;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::types::BorrowToSql;
use tokio_postgres::{Config, Error, NoTls, Row, Socket, Statement};

/// One PostgreSQL connection: the client that makes requests, and what carries them.
pub(crate) struct PgClient {
    driver: Driver,
    client: tokio_postgres::Client,
}

/// The single-threaded runtime and the connection's socket it drives.
struct Driver {
    runtime: tokio::runtime::Runtime,
    /// Writes requests and reads replies; polled whenever a call waits.
    connection: Pin<Box<tokio_postgres::Connection<Socket, NoTlsStream>>>,
    /// The connection ended (closed by the server, or failed): every request fails.
    ended: bool,
}

impl PgClient {
    pub(crate) fn connect(
        config: &Config,
    ) -> Result<PgClient, Box<dyn std::error::Error + Send + Sync>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (client, connection) = runtime.block_on(config.connect(NoTls))?;
        Ok(PgClient {
            driver: Driver {
                runtime,
                connection: Box::pin(connection),
                ended: false,
            },
            client,
        })
    }

    /// Runs one or more statements as a simple query, without parameters.
    pub(crate) fn batch_execute(&mut self, sql: &str) -> Result<(), Error> {
        let client = &self.client;
        self.driver.block_on(client.batch_execute(sql))
    }

    /// Sends `sql` as a simple query without waiting for its reply, which the connection reads
    /// (and drops) before the reply of the next request. The request is written to the socket
    /// before this returns: the previous request's reply has come, so the socket has room.
    pub(crate) fn send(&mut self, sql: &str) {
        let client = &self.client;
        let mut request = pin!(client.batch_execute(sql));
        let Driver {
            runtime,
            connection,
            ended,
        } = &mut self.driver;
        runtime.block_on(std::future::poll_fn(|cx| {
            // The first poll queues the request; the connection then writes it.
            let _ = request.as_mut().poll(cx);
            if !*ended {
                *ended = connection.as_mut().poll(cx).is_ready();
            }
            Poll::Ready(())
        }));
    }

    /// Prepares `sql` (one round trip).
    pub(crate) fn prepare(&mut self, sql: &str) -> Result<Statement, Error> {
        let client = &self.client;
        self.driver.block_on(client.prepare(sql))
    }

    /// Runs a prepared statement; returns the number of rows it affected.
    pub(crate) fn execute<P, I>(&mut self, statement: &Statement, params: I) -> Result<u64, Error>
    where
        P: BorrowToSql,
        I: IntoIterator<Item = P>,
        I::IntoIter: ExactSizeIterator,
    {
        let client = &self.client;
        self.driver.block_on(client.execute_raw(statement, params))
    }

    /// Runs a prepared statement and hands each row to `row` as it is read, all in one call
    /// into the driver; returns the number of rows the statement affected (from its command
    /// tag; `None` for commands without one). With `begin`, `BEGIN` is sent ahead of the
    /// statement in the same round trip, and its failure is the error returned before any
    /// row is handed out.
    pub(crate) fn query_each<P, I>(
        &mut self,
        begin: bool,
        statement: &Statement,
        params: I,
        mut row: impl FnMut(Row) -> Result<(), crate::error::Error>,
    ) -> Result<Option<u64>, crate::error::Error>
    where
        P: BorrowToSql,
        I: IntoIterator<Item = P>,
        I::IntoIter: ExactSizeIterator,
    {
        use crate::error::Error as OrmError;
        let client = &self.client;
        self.driver.block_on(async {
            // Joined, so that both requests go out before either reply is awaited.
            let (begun, rows) = futures_util::future::join(
                async {
                    match begin {
                        true => client.batch_execute("BEGIN").await,
                        false => Ok(()),
                    }
                },
                client.query_raw(statement, params),
            )
            .await;
            begun.map_err(OrmError::from_postgres)?;
            let mut rows = pin!(rows.map_err(OrmError::from_postgres)?);
            while let Some(r) = rows.try_next().await.map_err(OrmError::from_postgres)? {
                row(r)?;
            }
            Ok(rows.rows_affected())
        })
    }

    /// Whether the connection is closed (the pool then discards it).
    pub(crate) fn is_closed(&self) -> bool {
        self.driver.ended || self.client.is_closed()
    }
}

impl Driver {
    /// Runs `request` to its end, polling the connection meanwhile.
    fn block_on<R>(&mut self, request: impl Future<Output = R>) -> R {
        let mut request = pin!(request);
        let connection = &mut self.connection;
        let ended = &mut self.ended;
        self.runtime.block_on(std::future::poll_fn(|cx| {
            // The request first, so that what it queues is written by the same poll of the
            // connection; a reply wakes this task again.
            if let Poll::Ready(out) = request.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            if !*ended {
                // Notices are logged by the connection itself. When it ends, the request
                // learns it from its closed channel.
                *ended = connection.as_mut().poll(cx).is_ready();
            }
            // What the connection just read may be the reply the request waits for.
            request.as_mut().poll(cx)
        }))
    }
}
