//! The one interface the store's operations use to read and write, whatever the engine:
//! SQLite (the embedded default) or PostgreSQL (for a pair of remediators or more).
//!
//! Statements are written once, in the SQL both engines accept: `?1`-style placeholders (turned
//! into `$1` for PostgreSQL), `ON CONFLICT … DO …` instead of SQLite's `INSERT OR …`,
//! [`Db::insert`] for a new row's id, `CASE` instead of SQLite's two-argument `MIN`.
//! Values cross the interface as [`Value`]s, and rows come back as [`Row`]s read by position.

use super::StoreError;

/// A value of a parameter or a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer (also a boolean written as 0 or 1).
    Int(i64),
    /// A floating-point number (times are seconds since the epoch).
    Real(f64),
    /// Text.
    Text(String),
}

/// A Rust value that can be a statement's parameter; read by reference, so a field of a
/// borrowed struct can be passed as it is.
pub trait ToValue {
    /// The value as a parameter.
    fn to_value(&self) -> Value;
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(i64::from(*self))
            }
        }
    )*};
}
int_value!(i64, i32, u32, u16, u8, bool);

impl ToValue for usize {
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for std::borrow::Cow<'_, str> {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// The parameters of a statement: `args![a, b, …]`.
macro_rules! args {
    () => { &[] as &[$crate::store::db::Value] };
    ($($e:expr),+ $(,)?) => {
        &[$($crate::store::db::ToValue::to_value(&$e)),+] as &[$crate::store::db::Value]
    };
}
pub(crate) use args;

/// A row of a result, read by column position.
#[derive(Debug, Clone, Default)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `i` as `T`.
    ///
    /// # Errors
    /// When there is no such column, or its value is not a `T`.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, StoreError> {
        let v = self
            .0
            .get(i)
            .ok_or_else(|| StoreError(format!("no column {i} in a row of {}", self.0.len())))?;
        T::from_value(v).ok_or_else(|| StoreError(format!("column {i} holds {v:?}")))
    }
}

/// A Rust type a column can be read as.
pub trait FromValue: Sized {
    /// The value as `Self`, if it is one.
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl FromValue for usize {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| usize::try_from(i).ok())
    }
}

impl FromValue for u32 {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).and_then(|i| u32::try_from(i).ok())
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Real(f) => Some(*f),
            // An integral time written as an integer is the same time.
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Option<Self> {
        i64::from_value(v).map(|i| i != 0)
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// Which engine a [`Db`] is, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQLite, one writer in this process.
    Sqlite,
    /// PostgreSQL, shared by the replicas.
    Postgres,
}

/// A transaction of the store's database.
pub trait Db {
    /// Runs a statement; returns the rows it changed.
    ///
    /// # Errors
    /// What the engine reports.
    fn exec(&self, sql: &str, params: &[Value]) -> Result<usize, StoreError>;

    /// Runs a query; returns its rows.
    ///
    /// # Errors
    /// What the engine reports.
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError>;

    /// Runs an `INSERT` of one row into a table whose key is an integer `id` and returns the
    /// new row's `id`. `sql` has no `RETURNING`: SQLite keeps the rows of a `RETURNING`
    /// statement in a temporary table, which costs more than the insert (it reads the last row
    /// id instead); PostgreSQL gets `RETURNING id` added.
    ///
    /// # Errors
    /// What the engine reports.
    fn insert(&self, sql: &str, params: &[Value]) -> Result<i64, StoreError>;

    /// Runs a statement whose result nobody reads (an audit row). PostgreSQL's writer sends it
    /// without waiting for its answer, which it takes while the next statements run; an error
    /// of it fails the transaction at its end, and the operation that sent it when the batch
    /// runs again one operation at a time. Elsewhere it is [`Db::exec`].
    ///
    /// # Errors
    /// What the engine reports (where it waits for the answer).
    fn exec_later(&self, sql: &str, params: &[Value]) -> Result<(), StoreError> {
        self.exec(sql, params).map(|_| ())
    }

    /// The result of the accepting operation `token` when the writer accepted it with the
    /// batch's others in one statement ([`super::sets`]); `None`: it runs on its own.
    fn take_accepted(&self, _token: u64) -> Option<Result<super::Accepted, StoreError>> {
        None
    }

    /// What the writer read ahead for the decision on `job` ([`super::sets`]); `None`: the
    /// decision reads for itself.
    fn take_prefetched(&self, _job: i64) -> Option<super::sets::Prefetched> {
        None
    }

    /// Takes a new occurrence's job's end as decided (see `jobs::close_canonical`) to write it
    /// later: PostgreSQL's writer writes the batch's ends together in one statement
    /// ([`super::sets::end_all`]) before any other statement runs. Gives it back when it is to
    /// be written now ([`super::sets::end_one`]), as everywhere else.
    fn end_later(&self, end: super::sets::End) -> Option<super::sets::End> {
        Some(end)
    }

    /// The engine.
    fn engine(&self) -> Engine;

    /// Runs several statements without parameters (schema, engine settings).
    ///
    /// # Errors
    /// What the engine reports.
    fn batch(&self, sql: &str) -> Result<(), StoreError>;

    /// The replica this transaction runs on (audit rows name it, jobs it stores are its).
    fn replica(&self) -> &super::Replica;
}

/// Executes `sql`.
pub(crate) fn exec(c: &dyn Db, sql: &str, p: &[Value]) -> Result<usize, StoreError> {
    c.exec(sql, p)
}

/// The first row of `sql` mapped by `f`.
///
/// # Errors
/// When the query fails or returns no row.
pub(crate) fn row<T>(
    c: &dyn Db,
    sql: &str,
    p: &[Value],
    f: impl FnOnce(&Row) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    match c.query(sql, p)?.first() {
        Some(r) => f(r),
        None => Err(StoreError(format!("no row: {}", first_words(sql)))),
    }
}

/// The first row of `sql` mapped by `f`, or `None` when there is none.
///
/// # Errors
/// When the query fails.
pub(crate) fn row_opt<T>(
    c: &dyn Db,
    sql: &str,
    p: &[Value],
    f: impl FnOnce(&Row) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    c.query(sql, p)?.first().map(f).transpose()
}

/// Every row of `sql`, each mapped by `f`.
///
/// # Errors
/// When the query fails or a row does not map.
pub(crate) fn rows<T>(
    c: &dyn Db,
    sql: &str,
    p: &[Value],
    f: impl FnMut(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    c.query(sql, p)?.iter().map(f).collect()
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(8).collect::<Vec<_>>().join(" ")
}

// --- SQLite -------------------------------------------------------------------------------

/// A parameter is bound by reference: text is not copied again on its way to SQLite.
impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            Value::Text(String::from_utf8_lossy(t).into_owned())
        }
    }
}

/// A transaction (or read snapshot) of SQLite, on the replica `replica`.
pub struct Sqlite<'a> {
    /// The connection, inside its transaction.
    pub conn: &'a rusqlite::Connection,
    /// This replica.
    pub replica: &'a super::Replica,
}

impl Db for Sqlite<'_> {
    fn exec(&self, sql: &str, params: &[Value]) -> Result<usize, StoreError> {
        Ok(self
            .conn
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StoreError> {
        let mut st = self.conn.prepare_cached(sql)?;
        let n = st.column_count();
        let rows = st.query_map(rusqlite::params_from_iter(params), |r| {
            (0..n)
                .map(|i| r.get_ref(i).map(from_sqlite))
                .collect::<Result<Vec<_>, _>>()
                .map(Row)
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn insert(&self, sql: &str, params: &[Value]) -> Result<i64, StoreError> {
        self.exec(sql, params)?;
        Ok(self.conn.last_insert_rowid())
    }

    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.conn.execute_batch(sql)?)
    }

    fn replica(&self) -> &super::Replica {
        self.replica
    }
}
