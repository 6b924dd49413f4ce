//! `ALTER TABLE name <action>[, <action>…]` on a stored table's columns, as text still to
//! be typed by the executor: `ADD COLUMN [IF NOT EXISTS] c Type [DEFAULT expr]
//! [FIRST | AFTER c]`, `DROP COLUMN [IF EXISTS] c`, `RENAME COLUMN [IF EXISTS] a TO b`,
//! `MODIFY COLUMN [IF EXISTS] c Type`, `COMMENT COLUMN [IF EXISTS] c 'text'`.
//! `RESET OFFSETS` is handed to `reset_offsets`; ClickHouse's other ALTERs are refused by
//! name, as are `TRUNCATE`, `RENAME TABLE` and `EXCHANGE TABLES` (see `refuse_table_op`).

use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::{unexpected, SqlError, Statement, TokenText};

/// One action of an ALTER, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum AlterText {
    AddColumn {
        name: String,
        type_text: String,
        if_not_exists: bool,
        /// The DEFAULT expression as SQL text.
        default: Option<String>,
        /// `FIRST` (`Some(None)`) or `AFTER c` (`Some(Some(c))`); none: last.
        position: Option<Option<String>>,
    },
    DropColumn {
        name: String,
        if_exists: bool,
    },
    RenameColumn {
        from: String,
        to: String,
        if_exists: bool,
    },
    ModifyColumn {
        name: String,
        type_text: String,
        if_exists: bool,
    },
    CommentColumn {
        name: String,
        comment: String,
        if_exists: bool,
    },
    /// `MODIFY SETTING name = value` (`Some`), `RESET SETTING name` (`None`).
    ModifySetting {
        name: String,
        value: Option<String>,
    },
    /// `MODIFY QUERY SELECT …` of a materialized view; the only action of its ALTER.
    ModifyQuery(Box<sqlparser::ast::Query>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alter {
    pub table: String,
    pub actions: Vec<AlterText>,
}

/// Whether the next token is the word `word`, consuming it.
fn parse_word(p: &mut Parser, word: &str) -> bool {
    let matched = matches!(
        &p.peek_token_ref().token,
        Token::Word(w) if w.value.eq_ignore_ascii_case(word)
    );
    if matched {
        p.next_token();
    }
    matched
}

fn peek_word(p: &Parser, words: &[&str]) -> bool {
    matches!(
        &p.peek_token_ref().token,
        Token::Word(w) if words.iter().any(|word| w.value.eq_ignore_ascii_case(word))
    )
}

/// A column type as text, up to the next word that is not part of a type (or a comma or
/// the end at the top level).
fn parse_type_text(p: &mut Parser, column: &str) -> Result<String, SqlError> {
    let mut text = String::new();
    let mut depth = 0usize;
    loop {
        let token = p.peek_token_ref().token.clone();
        match token {
            Token::EOF | Token::SemiColon => break,
            Token::Comma if depth == 0 => break,
            Token::Word(_)
                if depth == 0
                    && peek_word(
                        p,
                        &[
                            "DEFAULT",
                            "FIRST",
                            "AFTER",
                            "COMMENT",
                            "CODEC",
                            "TTL",
                            "MATERIALIZED",
                            "ALIAS",
                            "EPHEMERAL",
                            "SETTINGS",
                        ],
                    ) =>
            {
                break
            }
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            _ => {}
        }
        text.push_str(&token.to_string_escaped());
        p.next_token();
    }
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(SqlError::Syntax(format!("column {column} has no type")));
    }
    Ok(text)
}

fn parse_string(p: &mut Parser, what: &str) -> Result<String, SqlError> {
    match p.next_token().token {
        Token::SingleQuotedString(s) => Ok(s),
        other => Err(SqlError::Syntax(format!(
            "expected {what} (a quoted string), found {other}"
        ))),
    }
}

/// After `ALTER TABLE name`.
pub(super) fn parse_alter(p: &mut Parser, table: String) -> Result<Statement, SqlError> {
    let offsets_next = matches!(
        &p.peek_nth_token_ref(1).token,
        Token::Word(w) if w.value.eq_ignore_ascii_case("OFFSETS")
    );
    if peek_word(p, &["RESET"]) && offsets_next {
        return super::reset_offsets::parse_alter(p, table);
    }
    if peek_word(p, &["MODIFY"])
        && matches!(&p.peek_nth_token_ref(1).token, Token::Word(w) if w.keyword == Keyword::QUERY)
    {
        p.next_token();
        p.next_token();
        let query = p.parse_query()?;
        return Ok(Statement::Alter(Alter {
            table,
            actions: vec![AlterText::ModifyQuery(query)],
        }));
    }
    let mut actions = Vec::new();
    loop {
        if peek_word(p, &["MODIFY", "RESET"])
            && matches!(&p.peek_nth_token_ref(1).token, Token::Word(w) if w.value.eq_ignore_ascii_case("SETTING"))
        {
            let reset = parse_word(p, "RESET");
            if !reset {
                p.next_token();
            }
            p.next_token();
            parse_settings(p, reset, &mut actions)?;
        } else {
            actions.push(parse_action(p, &table)?);
        }
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    Ok(Statement::Alter(Alter { table, actions }))
}

/// `name = value[, name = value…]` after MODIFY SETTING, `name[, name…]` after RESET
/// SETTING: a comma followed by another action's verb ends the list.
fn parse_settings(
    p: &mut Parser,
    reset: bool,
    actions: &mut Vec<AlterText>,
) -> Result<(), SqlError> {
    loop {
        let name = p.parse_identifier()?.value;
        let value = if reset {
            None
        } else {
            p.expect_token(&Token::Eq)?;
            let negative = p.consume_token(&Token::Minus);
            let token = p.next_token().token;
            let text = match token {
                Token::SingleQuotedString(s) => s,
                Token::Number(n, _) => n,
                Token::Word(w) => w.value,
                other => {
                    return Err(SqlError::Syntax(format!(
                        "SETTING {name}: expected a value, found {other}"
                    )))
                }
            };
            Some(if negative { format!("-{text}") } else { text })
        };
        actions.push(AlterText::ModifySetting { name, value });
        let next_is_setting = p.peek_token_ref().token == Token::Comma
            && matches!(&p.peek_nth_token_ref(1).token, Token::Word(w)
                if !["ADD", "DROP", "RENAME", "MODIFY", "COMMENT", "RESET"]
                    .iter()
                    .any(|v| w.value.eq_ignore_ascii_case(v)));
        if !next_is_setting {
            return Ok(());
        }
        p.next_token();
    }
}

fn parse_action(p: &mut Parser, table: &str) -> Result<AlterText, SqlError> {
    let verb = match &p.peek_token_ref().token {
        Token::Word(w) => w.value.to_uppercase(),
        other => {
            return Err(SqlError::Syntax(format!(
                "ALTER TABLE {table}: expected ADD, DROP, RENAME, MODIFY or COMMENT COLUMN, found {other}"
            )))
        }
    };
    p.next_token();
    let column_word = parse_word(p, "COLUMN");
    if !column_word {
        let what = match &p.peek_token_ref().token {
            Token::Word(w) => w.value.to_uppercase(),
            other => other.to_string(),
        };
        return Err(SqlError::Unsupported(format!(
            "ALTER TABLE {table} {verb} {what}: Sluice's ALTER changes columns (ADD, DROP, RENAME, MODIFY, COMMENT COLUMN) and resets a Kafka table's offsets (RESET OFFSETS); {verb} {what} is not supported"
        )));
    }
    Ok(match verb.as_str() {
        "ADD" => {
            let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let name = p.parse_identifier()?.value;
            let type_text = parse_type_text(p, &name)?;
            let default = if parse_word(p, "DEFAULT") {
                Some(p.parse_expr()?.to_string())
            } else {
                None
            };
            let position = if parse_word(p, "FIRST") {
                Some(None)
            } else if parse_word(p, "AFTER") {
                Some(Some(p.parse_identifier()?.value))
            } else {
                None
            };
            if let Token::Word(w) = &p.peek_token_ref().token {
                if !w.value.eq_ignore_ascii_case("COMMENT") || default.is_some() {
                    return Err(SqlError::Unsupported(format!(
                        "ALTER TABLE {table} ADD COLUMN {name}: {} is not supported (a column takes a type, DEFAULT and FIRST/AFTER)",
                        w.value.to_uppercase()
                    )));
                }
            }
            AlterText::AddColumn {
                name,
                type_text,
                if_not_exists,
                default,
                position,
            }
        }
        "DROP" => {
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            AlterText::DropColumn {
                name: p.parse_identifier()?.value,
                if_exists,
            }
        }
        "RENAME" => {
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let from = p.parse_identifier()?.value;
            if !p.parse_keyword(Keyword::TO) {
                return Err(unexpected(p, "TO <new name>"));
            }
            AlterText::RenameColumn {
                from,
                to: p.parse_identifier()?.value,
                if_exists,
            }
        }
        "MODIFY" => {
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = p.parse_identifier()?.value;
            let type_text = parse_type_text(p, &name)?;
            if let Token::Word(w) = &p.peek_token_ref().token {
                return Err(SqlError::Unsupported(format!(
                    "ALTER TABLE {table} MODIFY COLUMN {name} {type_text} {}: only a new type is supported",
                    w.value.to_uppercase()
                )));
            }
            AlterText::ModifyColumn {
                name,
                type_text,
                if_exists,
            }
        }
        "COMMENT" => {
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = p.parse_identifier()?.value;
            AlterText::CommentColumn {
                name,
                comment: parse_string(p, "the comment")?,
                if_exists,
            }
        }
        other => {
            return Err(SqlError::Unsupported(format!(
                "ALTER TABLE {table} {other} COLUMN: expected ADD, DROP, RENAME, MODIFY or COMMENT COLUMN"
            )))
        }
    })
}

/// `TRUNCATE`, `RENAME TABLE` and `EXCHANGE TABLES`: refused, with why.
pub(super) fn refuse_table_op(verb: &str) -> SqlError {
    let why = match verb {
        "TRUNCATE" => "a stored table's rows are replicated by its Raft group together with the Kafka positions they were read up to, and dropping rows through that group is not built yet; DROP TABLE and CREATE TABLE again (with its views) to empty a table",
        _ => "a table's Raft group, its replicas' storage and the materialized views that read or write it are keyed by the table's name",
    };
    SqlError::Unsupported(format!("{verb} is not supported: {why}"))
}

#[cfg(test)]
mod tests {
    use crate::sql::{parse, SqlError, Statement};

    use super::{Alter, AlterText};

    fn alter(sql: &str) -> Alter {
        match parse(sql) {
            Ok(Statement::Alter(a)) => a,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn parses_every_column_action() {
        let a = alter(
            "ALTER TABLE default.t ADD COLUMN IF NOT EXISTS c Nullable(Int64) AFTER a, \
             ADD COLUMN d LowCardinality(String) DEFAULT concat('x', 'y') FIRST, \
             DROP COLUMN IF EXISTS e, RENAME COLUMN f TO g, MODIFY COLUMN h Int64, \
             COMMENT COLUMN i 'it''s i';",
        );
        assert_eq!(a.table, "t");
        assert_eq!(
            a.actions,
            vec![
                AlterText::AddColumn {
                    name: "c".into(),
                    type_text: "Nullable(Int64)".into(),
                    if_not_exists: true,
                    default: None,
                    position: Some(Some("a".into())),
                },
                AlterText::AddColumn {
                    name: "d".into(),
                    type_text: "LowCardinality(String)".into(),
                    if_not_exists: false,
                    default: Some("concat('x', 'y')".into()),
                    position: Some(None),
                },
                AlterText::DropColumn {
                    name: "e".into(),
                    if_exists: true
                },
                AlterText::RenameColumn {
                    from: "f".into(),
                    to: "g".into(),
                    if_exists: false
                },
                AlterText::ModifyColumn {
                    name: "h".into(),
                    type_text: "Int64".into(),
                    if_exists: false
                },
                AlterText::CommentColumn {
                    name: "i".into(),
                    comment: "it's i".into(),
                    if_exists: false
                },
            ]
        );
    }

    #[test]
    fn parses_settings_and_view_queries() {
        let a = alter(
            "ALTER TABLE q MODIFY SETTING kafka_max_block_size = 10, kafka_flush_interval_ms = '200', \
             RESET SETTING kafka_poll_timeout_ms, kafka_skip_broken_messages, DROP COLUMN x",
        );
        let set = |name: &str, value: Option<&str>| AlterText::ModifySetting {
            name: name.into(),
            value: value.map(str::to_string),
        };
        assert_eq!(
            a.actions,
            vec![
                set("kafka_max_block_size", Some("10")),
                set("kafka_flush_interval_ms", Some("200")),
                set("kafka_poll_timeout_ms", None),
                set("kafka_skip_broken_messages", None),
                AlterText::DropColumn {
                    name: "x".into(),
                    if_exists: false
                },
            ]
        );
        let a = alter("ALTER TABLE mv MODIFY QUERY SELECT id, 1 AS one FROM q");
        assert!(
            matches!(&a.actions[..], [AlterText::ModifyQuery(q)] if q.to_string() == "SELECT id, 1 AS one FROM q")
        );
    }

    #[test]
    fn reset_offsets_still_parses() {
        assert!(matches!(
            parse("ALTER TABLE q RESET OFFSETS TO EARLIEST"),
            Ok(Statement::ResetOffsets(_))
        ));
    }

    #[test]
    fn other_statements_are_refused_by_name() {
        for (sql, words) in [
            ("ALTER TABLE t MODIFY ORDER BY k", "MODIFY ORDER"),
            ("ALTER TABLE t DELETE WHERE 1", "DELETE"),
            ("TRUNCATE TABLE t", "TRUNCATE is not supported"),
            ("RENAME TABLE a TO b", "RENAME is not supported"),
            ("EXCHANGE TABLES a AND b", "EXCHANGE is not supported"),
        ] {
            match parse(sql) {
                Err(SqlError::Unsupported(m)) => assert!(m.contains(words), "{sql}: {m}"),
                other => panic!("{sql}: {other:?}"),
            }
        }
    }
}
