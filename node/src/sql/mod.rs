//! SQL text to typed statements.
//!
//! ClickHouse DDL (`ENGINE = Kafka(...)`, `SETTINGS`, `CREATE TABLE x AS y`, `TO target`)
//! is parsed here with sqlparser's tokenizer and its ClickHouse dialect; SELECTs are parsed
//! into sqlparser's AST and handed to the query engine. Nothing deeper than this module
//! sees SQL text, except the view queries the catalog keeps to run over each block.
//! Must not import the catalog's storage, `rdkafka` or `actix`.

pub mod alter;
pub mod ddl;
pub mod insert_data;
pub mod named_collections;
pub mod reset_offsets;
pub mod show_create;

use crate::catalog::kafka_settings::Format;
use sqlparser::ast::{FormatClause, Query, Statement as SqlStatement};
use sqlparser::dialect::ClickHouseDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Token, Tokenizer};

/// The only database: ClickHouse users write `default.t` or plain `t`.
pub const DEFAULT_DATABASE: &str = "default";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SqlError {
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("unsupported statement: {0}")]
    Unsupported(String),
    #[error("database {0} does not exist (Sluice has one database, 'default')")]
    NoDatabase(String),
    #[error("empty statement")]
    Empty,
}

impl From<ParserError> for SqlError {
    fn from(e: ParserError) -> Self {
        SqlError::Syntax(match e {
            ParserError::TokenizerError(s) | ParserError::ParserError(s) => s,
            ParserError::RecursionLimitExceeded => "statement nested too deeply".into(),
        })
    }
}

/// A column as written in DDL: the type is kept as text and typed by the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnText {
    pub name: String,
    pub type_text: String,
}

/// An engine argument: `'quoted'`, a number, a bare identifier (a named collection), or
/// `key = value` (overriding a key of the collection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineArg {
    String(String),
    Number(String),
    Ident(String),
    Setting(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineClause {
    pub name: String,
    pub args: Vec<EngineArg>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTable {
    pub name: String,
    pub if_not_exists: bool,
    /// Either explicit columns or `AS other_table`.
    pub columns: Vec<ColumnText>,
    pub as_table: Option<String>,
    pub engine: EngineClause,
    pub order_by: Vec<String>,
    pub settings: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CreateView {
    pub name: String,
    pub if_not_exists: bool,
    pub target: String,
    pub query: Box<Query>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    CreateTable(CreateTable),
    CreateView(CreateView),
    DropTable {
        name: String,
        if_exists: bool,
    },
    DropView {
        name: String,
        if_exists: bool,
    },
    Detach {
        name: String,
    },
    Attach {
        name: String,
    },
    ShowTables,
    Describe {
        name: String,
    },
    /// A SELECT for the query engine, and the output format its `FORMAT` clause named.
    Query {
        statement: Box<SqlStatement>,
        format: Option<String>,
    },
    /// `INSERT INTO table [(columns)] SELECT ... | VALUES ...`.
    Insert(Insert),
    /// `ALTER TABLE queue RESET OFFSETS …`.
    ResetOffsets(reset_offsets::ResetOffsets),
    /// `ALTER TABLE t ADD | DROP | RENAME | MODIFY | COMMENT COLUMN …`.
    Alter(alter::Alter),
    /// `CREATE`/`ALTER`/`DROP NAMED COLLECTION`, `SHOW NAMED COLLECTIONS`.
    NamedCollection(named_collections::CollectionStatement),
    /// `SHOW CREATE [TABLE|VIEW|NAMED COLLECTION] name`.
    ShowCreate(show_create::ShowCreate),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Insert {
    pub table: String,
    /// The columns the rows fill, in order; empty means all declared columns.
    pub columns: Vec<String>,
    /// `SETTINGS name = value, …` written before the rows (`insert_deduplication_token`, …).
    pub settings: Vec<(String, String)>,
    pub rows: InsertRows,
}

/// Where an INSERT's rows come from.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertRows {
    /// A SELECT or VALUES, without its FORMAT clause, and the format that clause named:
    /// for a Kafka table the table's `kafka_format` decides how rows are written, and
    /// the executor refuses a clause that names another one.
    Query {
        source: Box<Query>,
        format: Option<Format>,
    },
    /// `FORMAT <name>` and data: written inline after the name, or streamed by the client.
    Data {
        format: Format,
        inline: Option<String>,
    },
}

/// Splits a script into statements at top-level semicolons, skipping empty ones.
pub fn split_statements(text: &str) -> Result<Vec<String>, SqlError> {
    let dialect = ClickHouseDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize()
        .map_err(|e| SqlError::Syntax(e.to_string()))?;
    let mut out = Vec::new();
    let mut current = String::new();
    for token in tokens {
        if token == Token::SemiColon {
            push_statement(&mut out, &mut current);
        } else {
            current.push_str(&token.to_string_escaped());
        }
    }
    push_statement(&mut out, &mut current);
    Ok(out)
}

fn push_statement(out: &mut Vec<String>, current: &mut String) {
    let statement = current.trim();
    // A chunk of only comments is not a statement.
    let meaningful = statement
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim().starts_with("--"));
    if meaningful {
        out.push(statement.to_string());
    }
    current.clear();
}

trait TokenText {
    fn to_string_escaped(&self) -> String;
}

impl TokenText for Token {
    /// sqlparser prints string tokens without escaping quotes inside them.
    fn to_string_escaped(&self) -> String {
        match self {
            Token::SingleQuotedString(s) => format!("'{}'", s.replace('\'', "''")),
            other => other.to_string(),
        }
    }
}

/// Parses one statement (a trailing `;` is allowed).
pub fn parse(text: &str) -> Result<Statement, SqlError> {
    // The data of `INSERT … FORMAT <name> <data>` is not SQL: cut it off first.
    if let Some(end) = insert_data::format_end(text) {
        let mut statement = parse_statement(&text[..end])?;
        if let Statement::Insert(Insert {
            rows: InsertRows::Data { inline, .. },
            ..
        }) = &mut statement
        {
            *inline = insert_data::inline_data(&text[end..]).map(str::to_string);
        }
        return Ok(statement);
    }
    parse_statement(text)
}

/// Parses one statement's SQL (any inline data already cut off).
fn parse_statement(text: &str) -> Result<Statement, SqlError> {
    let dialect = ClickHouseDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(text)?;
    if p.peek_token_ref().token == Token::EOF {
        return Err(SqlError::Empty);
    }
    let statement = if let Some(statement) = named_collections::parse(&mut p)? {
        statement
    } else if let Some(statement) = show_create::parse(&mut p)? {
        statement
    } else if p.parse_keyword(Keyword::CREATE) {
        parse_create(&mut p)?
    } else if p.parse_keyword(Keyword::DROP) {
        let is_view = if p.parse_keyword(Keyword::TABLE) {
            false
        } else if p.parse_keyword(Keyword::VIEW) {
            true
        } else {
            return Err(unexpected(&p, "TABLE or VIEW after DROP"));
        };
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = parse_table_name(&mut p)?;
        // ClickHouse's `SYNC` is how a drop waits; Sluice's drops are always synchronous.
        let _ = p.parse_keyword(Keyword::SYNC);
        if is_view {
            Statement::DropView { name, if_exists }
        } else {
            Statement::DropTable { name, if_exists }
        }
    } else if p.parse_keyword(Keyword::DETACH) {
        let _ = p.parse_keyword(Keyword::TABLE);
        Statement::Detach {
            name: parse_table_name(&mut p)?,
        }
    } else if p.parse_keyword(Keyword::ATTACH) {
        let _ = p.parse_keyword(Keyword::TABLE);
        Statement::Attach {
            name: parse_table_name(&mut p)?,
        }
    } else if p.parse_keywords(&[Keyword::SHOW, Keyword::TABLES]) {
        if p.parse_keyword(Keyword::FROM) || p.parse_keyword(Keyword::IN) {
            let db = p.parse_identifier()?.value;
            if db != DEFAULT_DATABASE {
                return Err(SqlError::NoDatabase(db));
            }
        }
        Statement::ShowTables
    } else if p.parse_keyword(Keyword::DESCRIBE) || p.parse_keyword(Keyword::DESC) {
        let _ = p.parse_keyword(Keyword::TABLE);
        Statement::Describe {
            name: parse_table_name(&mut p)?,
        }
    } else if p.parse_keyword(Keyword::INSERT) {
        parse_insert(&mut p)?
    } else if p.parse_keywords(&[Keyword::ALTER, Keyword::TABLE]) {
        let table = parse_table_name(&mut p)?;
        alter::parse_alter(&mut p, table)?
    } else if let Some(verb) = ["TRUNCATE", "RENAME", "EXCHANGE"].into_iter().find(
        |v| matches!(&p.peek_token_ref().token, Token::Word(w) if w.value.eq_ignore_ascii_case(v)),
    ) {
        return Err(alter::refuse_table_op(verb));
    } else if matches!(
        p.peek_token_ref().token,
        Token::Word(ref w) if w.keyword == Keyword::SELECT || w.keyword == Keyword::WITH
    ) || p.peek_token_ref().token == Token::LParen
    {
        return parse_query(text);
    } else {
        let first = p.peek_token_ref().token.to_string();
        return Err(SqlError::Unsupported(format!(
            "statements starting with {first} are not supported (supported: CREATE TABLE, CREATE MATERIALIZED VIEW, DROP, DETACH, ATTACH, ALTER TABLE, CREATE/ALTER/DROP NAMED COLLECTION, SHOW TABLES, SHOW CREATE, DESCRIBE, SELECT, INSERT)"
        )));
    };
    let _ = p.consume_token(&Token::SemiColon);
    if p.peek_token_ref().token != Token::EOF {
        return Err(unexpected(&p, "the end of the statement"));
    }
    Ok(statement)
}

/// A SELECT, and the output format of its `FORMAT` clause. The engine plans the query;
/// how its rows are written is the caller's business.
fn parse_query(text: &str) -> Result<Statement, SqlError> {
    let (text, trailing) = cut_trailing_format(text)?;
    let dialect = ClickHouseDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(text)?;
    let mut statement = p.parse_statement()?;
    let _ = p.consume_token(&Token::SemiColon);
    if p.peek_token_ref().token != Token::EOF {
        return Err(unexpected(&p, "the end of the statement"));
    }
    let clause = match &mut statement {
        SqlStatement::Query(q) => match q.format_clause.take() {
            Some(FormatClause::Identifier(name)) => Some(name.value),
            Some(FormatClause::Null) => Some("Null".to_string()),
            None => None,
        },
        _ => None,
    };
    Ok(Statement::Query {
        statement: Box::new(statement),
        format: trailing.or(clause),
    })
}

/// A statement's last words `FORMAT <name>` cut off: sqlparser reads `SELECT 1 FORMAT
/// JSON` as a column alias followed by a stray word.
fn cut_trailing_format(text: &str) -> Result<(&str, Option<String>), SqlError> {
    let dialect = ClickHouseDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .map_err(|e| SqlError::Syntax(e.to_string()))?;
    let meaningful: Vec<_> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::SemiColon))
        .collect();
    if let [.., keyword, name] = meaningful.as_slice() {
        if let (Token::Word(k), Token::Word(n)) = (&keyword.token, &name.token) {
            if k.keyword == Keyword::FORMAT && meaningful.len() > 2 {
                let at = byte_offset(text, keyword.span.start.line, keyword.span.start.column);
                return Ok((&text[..at], Some(n.value.clone())));
            }
        }
    }
    Ok((text, None))
}

/// The byte offset of a 1-based line and character column.
fn byte_offset(text: &str, line: u64, column: u64) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            let chars = usize::try_from(column.saturating_sub(1)).unwrap_or(usize::MAX);
            return offset
                + l.char_indices()
                    .nth(chars)
                    .map_or(l.len(), |(byte, _)| byte);
        }
        offset += l.len();
    }
    text.len()
}

/// Parses a SELECT given on its own (a trailing `;` is allowed) exactly as the words after
/// a view's `AS` are parsed: the query of a materialized view created by a typed call,
/// whose names arrive as fields and only the query as SQL.
pub fn parse_select(text: &str) -> Result<Box<Query>, SqlError> {
    let dialect = ClickHouseDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(text)?;
    let query = p.parse_query()?;
    let _ = p.consume_token(&Token::SemiColon);
    if p.peek_token_ref().token != Token::EOF {
        return Err(unexpected(&p, "the end of the statement"));
    }
    Ok(query)
}

fn unexpected(p: &Parser, expected: &str) -> SqlError {
    let found = &p.peek_token_ref();
    SqlError::Syntax(format!(
        "expected {expected}, found '{}' at {}",
        found.token, found.span.start
    ))
}

/// `name` or `default.name`.
fn parse_table_name(p: &mut Parser) -> Result<String, SqlError> {
    let first = p.parse_identifier()?.value;
    if p.consume_token(&Token::Period) {
        let second = p.parse_identifier()?.value;
        if first != DEFAULT_DATABASE {
            return Err(SqlError::NoDatabase(first));
        }
        return Ok(second);
    }
    Ok(first)
}

/// After INSERT: `INTO [TABLE] name [(columns)]`, then a SELECT or VALUES with an
/// optional `FORMAT <name>` (the guide writes `FORMAT JSONEachRow`; the table's format
/// decides).
fn parse_insert(p: &mut Parser) -> Result<Statement, SqlError> {
    p.expect_keyword_is(Keyword::INTO)?;
    let _ = p.parse_keyword(Keyword::TABLE);
    let table = parse_table_name(p)?;
    let mut columns = Vec::new();
    if p.consume_token(&Token::LParen) {
        loop {
            // A dotted name is one column (`_headers.name`, as ClickHouse's Nested).
            let mut column = p.parse_identifier()?.value;
            while p.consume_token(&Token::Period) {
                column.push('.');
                column.push_str(&p.parse_identifier()?.value);
            }
            columns.push(column);
            if p.consume_token(&Token::RParen) {
                break;
            }
            p.expect_token(&Token::Comma)?;
        }
    }
    let settings = if p.parse_keyword(Keyword::SETTINGS) {
        parse_settings(p)?
    } else {
        Vec::new()
    };
    if p.parse_keyword(Keyword::FORMAT) {
        let name = p.parse_identifier()?.value;
        let format = Format::from_name(&name).ok_or_else(|| {
            SqlError::Unsupported(format!(
                "INSERT INTO {table} FORMAT {name}: unknown input format"
            ))
        })?;
        return Ok(Statement::Insert(Insert {
            table,
            columns,
            settings,
            rows: InsertRows::Data {
                format,
                inline: None,
            },
        }));
    }
    let mut source = p.parse_query()?;
    let format = match source.format_clause.take() {
        None => None,
        Some(FormatClause::Identifier(name)) if Format::from_name(&name.value).is_some() => {
            Format::from_name(&name.value)
        }
        Some(other) => {
            let name = match other {
                FormatClause::Identifier(name) => name.value,
                FormatClause::Null => "NULL".into(),
            };
            return Err(SqlError::Unsupported(format!(
                "INSERT INTO {table} ... FORMAT {name}: unknown format"
            )));
        }
    };
    Ok(Statement::Insert(Insert {
        table,
        columns,
        settings,
        rows: InsertRows::Query { source, format },
    }))
}

fn parse_create(p: &mut Parser) -> Result<Statement, SqlError> {
    if p.parse_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW]) {
        let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = parse_table_name(p)?;
        if !p.parse_keyword(Keyword::TO) {
            return Err(SqlError::Unsupported(format!(
                "materialized view {name} needs TO <table>: views with inner storage are not supported"
            )));
        }
        let target = parse_table_name(p)?;
        p.expect_keyword_is(Keyword::AS)?;
        let query = p.parse_query()?;
        return Ok(Statement::CreateView(CreateView {
            name,
            if_not_exists,
            target,
            query,
        }));
    }
    let _ = p.parse_keyword(Keyword::OR) && p.parse_keyword(Keyword::REPLACE);
    if !p.parse_keyword(Keyword::TABLE) {
        return Err(unexpected(p, "TABLE or MATERIALIZED VIEW after CREATE"));
    }
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = parse_table_name(p)?;
    let mut columns = Vec::new();
    let mut as_table = None;
    if p.consume_token(&Token::LParen) {
        loop {
            columns.push(parse_column(p)?);
            if p.consume_token(&Token::RParen) {
                break;
            }
            p.expect_token(&Token::Comma)?;
        }
        if p.parse_keyword(Keyword::AS) {
            return Err(SqlError::Unsupported(
                "CREATE TABLE ... AS SELECT is not supported".into(),
            ));
        }
    } else if p.parse_keyword(Keyword::AS) {
        as_table = Some(parse_table_name(p)?);
    } else {
        return Err(unexpected(p, "a column list or AS <table>"));
    }
    if !p.parse_keyword(Keyword::ENGINE) {
        return Err(SqlError::Syntax(format!(
            "table {name}: ENGINE = ... is required"
        )));
    }
    let _ = p.consume_token(&Token::Eq);
    let engine = parse_engine(p)?;
    let mut order_by = Vec::new();
    let mut settings = Vec::new();
    loop {
        if p.parse_keywords(&[Keyword::ORDER, Keyword::BY]) {
            order_by = parse_key_list(p)?;
        } else if p.parse_keywords(&[Keyword::PARTITION, Keyword::BY])
            || p.parse_keywords(&[Keyword::PRIMARY, Keyword::KEY])
        {
            // Part layout has no meaning for Sluice's block storage.
            let _ = parse_key_list(p)?;
        } else if p.parse_keyword(Keyword::SETTINGS) {
            settings = parse_settings(p)?;
        } else {
            break;
        }
    }
    Ok(Statement::CreateTable(CreateTable {
        name,
        if_not_exists,
        columns,
        as_table,
        engine,
        order_by,
        settings,
    }))
}

fn parse_column(p: &mut Parser) -> Result<ColumnText, SqlError> {
    let name = p.parse_identifier()?.value;
    let mut type_text = String::new();
    let mut depth = 0usize;
    loop {
        let token = p.peek_token_ref().token.clone();
        match token {
            Token::EOF => break,
            Token::Comma | Token::RParen if depth == 0 => break,
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(ref w)
                if depth == 0
                    && [
                        "DEFAULT",
                        "MATERIALIZED",
                        "ALIAS",
                        "CODEC",
                        "COMMENT",
                        "TTL",
                        "EPHEMERAL",
                    ]
                    .contains(&w.value.to_uppercase().as_str()) =>
            {
                return Err(SqlError::Unsupported(format!(
                    "column {name}: {} is not supported",
                    w.value.to_uppercase()
                )));
            }
            _ => {}
        }
        type_text.push_str(&token.to_string_escaped());
        p.next_token();
    }
    if type_text.trim().is_empty() {
        return Err(SqlError::Syntax(format!("column {name} has no type")));
    }
    Ok(ColumnText {
        name,
        type_text: type_text.trim().to_string(),
    })
}

fn parse_engine(p: &mut Parser) -> Result<EngineClause, SqlError> {
    let name = p.parse_identifier()?.value;
    let mut args = Vec::new();
    if p.consume_token(&Token::LParen) && !p.consume_token(&Token::RParen) {
        loop {
            let token = p.next_token().token;
            args.push(match token {
                Token::SingleQuotedString(s) => EngineArg::String(s),
                Token::Number(n, _) => EngineArg::Number(n),
                // `Kafka(collection, key = value, …)`: an override of the collection.
                Token::Word(w) if p.consume_token(&Token::Eq) => {
                    let value = parse_setting_value(p, &w.value)?;
                    EngineArg::Setting(w.value, value)
                }
                Token::Word(w) => EngineArg::Ident(w.value),
                other => {
                    return Err(SqlError::Syntax(format!(
                        "engine {name}: unexpected argument '{other}'"
                    )))
                }
            });
            if p.consume_token(&Token::RParen) {
                break;
            }
            p.expect_token(&Token::Comma)?;
        }
    }
    Ok(EngineClause { name, args })
}

/// `(a, b, c)`, `a`, or `tuple()`; expressions are kept as their text.
fn parse_key_list(p: &mut Parser) -> Result<Vec<String>, SqlError> {
    let expr = p.parse_expr()?;
    Ok(match expr {
        sqlparser::ast::Expr::Tuple(items) => items.iter().map(|e| e.to_string()).collect(),
        sqlparser::ast::Expr::Nested(inner) => vec![inner.to_string()],
        sqlparser::ast::Expr::Function(f) if f.name.to_string() == "tuple" => Vec::new(),
        other => vec![other.to_string()],
    })
}

fn parse_settings(p: &mut Parser) -> Result<Vec<(String, String)>, SqlError> {
    let mut out = Vec::new();
    loop {
        let name = p.parse_identifier()?.value;
        p.expect_token(&Token::Eq)?;
        let value = parse_setting_value(p, &name)?;
        out.push((name, value));
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    Ok(out)
}

/// The value after `name =`: a quoted string, a number, or a bare word. The error names
/// the setting, never the value (it may be a secret).
fn parse_setting_value(p: &mut Parser, name: &str) -> Result<String, SqlError> {
    let negative = p.consume_token(&Token::Minus);
    Ok(match p.next_token().token {
        Token::SingleQuotedString(s) => s,
        Token::Number(n, _) if negative => format!("-{n}"),
        Token::Number(n, _) => n,
        Token::Word(w) => w.value,
        _ => {
            return Err(SqlError::Syntax(format!(
                "setting {name}: expected a quoted string or a number as its value"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUIDE_QUEUE: &str = "CREATE TABLE github_queue
(
    file_time DateTime,
    event_type Enum('CommitCommentEvent' = 1, 'CreateEvent' = 2),
    actor_login LowCardinality(String),
    labels Array(LowCardinality(String)),
    number UInt32
)
ENGINE = Kafka()
SETTINGS kafka_broker_list='<host>:<port>',
         kafka_topic_list='github',
         kafka_group_name='clickhouse',
         kafka_format = 'JSONEachRow',
         kafka_thread_per_consumer = 0, 
         kafka_num_consumers = 1,
         -- Connecting to a Kafka broker using simple
         -- username/password authentication
         kafka_security_protocol='sasl_ssl',
         kafka_sasl_mechanism = 'PLAIN',
         kafka_sasl_username = '<username>',
         kafka_sasl_password = '<password>';";

    #[test]
    fn guide_kafka_table() {
        let Statement::CreateTable(t) = parse(GUIDE_QUEUE).expect("parses") else {
            panic!("not a create table");
        };
        assert_eq!(t.name, "github_queue");
        assert_eq!(t.engine.name, "Kafka");
        assert!(t.engine.args.is_empty());
        assert_eq!(t.columns.len(), 5);
        assert_eq!(
            t.columns[1].type_text,
            "Enum('CommitCommentEvent'=1,'CreateEvent'=2)"
        );
        assert_eq!(t.columns[3].type_text, "Array(LowCardinality(String))");
        assert_eq!(t.settings.len(), 10);
        assert_eq!(
            t.settings[0],
            ("kafka_broker_list".to_string(), "<host>:<port>".to_string())
        );
        assert_eq!(
            t.settings[4],
            ("kafka_thread_per_consumer".to_string(), "0".to_string())
        );
    }

    #[test]
    fn positional_kafka_engine() {
        let sql =
            "CREATE TABLE q (a UInt8) ENGINE = Kafka('host:port', 'github_out', 'clickhouse_out',
            'JSONEachRow') settings kafka_thread_per_consumer = 0, kafka_num_consumers = 1;";
        let Statement::CreateTable(t) = parse(sql).expect("parses") else {
            panic!("not a create table");
        };
        assert_eq!(t.engine.args.len(), 4);
        assert_eq!(t.engine.args[1], EngineArg::String("github_out".into()));
        assert_eq!(t.settings.len(), 2);
    }

    #[test]
    fn create_as_and_view() {
        let sql = "CREATE TABLE github AS github_queue
ENGINE = MergeTree()
ORDER BY (event_type, repo_name, created_at);";
        let Statement::CreateTable(t) = parse(sql).expect("parses") else {
            panic!("not a create table");
        };
        assert_eq!(t.as_table.as_deref(), Some("github_queue"));
        assert_eq!(t.order_by, vec!["event_type", "repo_name", "created_at"]);
        let sql = "CREATE MATERIALIZED VIEW github_mv TO github AS\nSELECT *\nFROM github_queue;";
        let Statement::CreateView(v) = parse(sql).expect("parses") else {
            panic!("not a view");
        };
        assert_eq!(v.target, "github");
        assert_eq!(v.query.to_string(), "SELECT * FROM github_queue");
    }

    #[test]
    fn drops_and_queries() {
        assert_eq!(
            parse("DROP VIEW github_mv").expect("parses"),
            Statement::DropView {
                name: "github_mv".into(),
                if_exists: false
            }
        );
        assert_eq!(
            parse("drop table if exists default.github").expect("parses"),
            Statement::DropTable {
                name: "github".into(),
                if_exists: true
            }
        );
        assert_eq!(
            parse("DROP TABLE other.github"),
            Err(SqlError::NoDatabase("other".into()))
        );
        assert_eq!(parse("SHOW TABLES").expect("parses"), Statement::ShowTables);
        assert!(matches!(
            parse("SELECT count() FROM github").expect("parses"),
            Statement::Query { format: None, .. }
        ));
        assert!(matches!(
            parse("SELECT * FROM system.kafka_consumers ORDER BY assignments.partition_id ASC")
                .expect("parses"),
            Statement::Query { format: None, .. }
        ));
        for (text, query, wanted) in [
            (
                "SELECT 1 FORMAT JSONEachRow",
                "SELECT 1",
                Some("JSONEachRow"),
            ),
            (
                "SELECT a\nFROM t\nWHERE b = 'é' FORMAT Vertical;",
                "SELECT a FROM t WHERE b = 'é'",
                Some("Vertical"),
            ),
            ("SELECT 1 AS format", "SELECT 1 AS format", None),
        ] {
            match parse(text).expect("parses") {
                Statement::Query { statement, format } => {
                    assert_eq!(format.as_deref(), wanted, "{text}");
                    assert_eq!(statement.to_string(), query, "{text}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn errors_say_where() {
        let err = parse("CREATE TABLE t (a UInt8) ENGINE = MergeTree() ORDER BY a garbage")
            .expect_err("trailing garbage");
        assert!(err.to_string().contains("garbage"), "{err}");
        assert!(matches!(
            parse("UPDATE t SET a = 1"),
            Err(SqlError::Unsupported(_))
        ));
        assert!(parse("CREATE TABLE t (a UInt8)").is_err());
        assert_eq!(parse("  "), Err(SqlError::Empty));
    }

    #[test]
    fn splits_scripts() {
        let parts =
            split_statements("SELECT 1; -- comment only\n; SELECT ';' ;\n").expect("splits");
        assert_eq!(
            parts,
            vec!["SELECT 1".to_string(), "SELECT ';'".to_string()]
        );
    }
}
