//! `CREATE NAMED COLLECTION`, `ALTER NAMED COLLECTION`, `DROP NAMED COLLECTION` and
//! `SHOW NAMED COLLECTIONS`, in ClickHouse's syntax, to typed statements.
//!
//! `ON CLUSTER c` is accepted and ignored: a collection made by SQL is replicated to every
//! node anyway. Errors name the key, never its value (values may be secrets).

use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::{parse_setting_value, unexpected, SqlError, Statement};
use crate::catalog::named_collections::{CollectionChange, CollectionEntry};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectionStatement {
    Create {
        name: String,
        if_not_exists: bool,
        entries: Vec<(String, CollectionEntry)>,
    },
    Alter {
        name: String,
        if_exists: bool,
        change: CollectionChange,
    },
    Drop {
        name: String,
        if_exists: bool,
    },
    /// `SHOW NAMED COLLECTIONS`: the names, as `system.named_collections` lists them.
    Show,
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.value.eq_ignore_ascii_case(word))
}

/// The statement, if the words ahead start one of these; `None` leaves the parser as it
/// was for the other statements.
pub fn parse(p: &mut Parser) -> Result<Option<Statement>, SqlError> {
    let [first, second, third] = p.peek_tokens::<3>();
    if is_word(&first, "SHOW") && is_word(&second, "NAMED") && is_word(&third, "COLLECTIONS") {
        for _ in 0..3 {
            p.next_token();
        }
        return Ok(Some(Statement::NamedCollection(CollectionStatement::Show)));
    }
    let verb = ["CREATE", "ALTER", "DROP"]
        .into_iter()
        .find(|v| is_word(&first, v));
    let Some(verb) = verb else {
        return Ok(None);
    };
    if !(is_word(&second, "NAMED") && is_word(&third, "COLLECTION")) {
        return Ok(None);
    }
    for _ in 0..3 {
        p.next_token();
    }
    let statement = match verb {
        "CREATE" => {
            let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let name = p.parse_identifier()?.value;
            skip_on_cluster(p)?;
            if !p.parse_keyword(Keyword::AS) {
                return Err(unexpected(
                    p,
                    &format!("AS key = value, … after CREATE NAMED COLLECTION {name}"),
                ));
            }
            CollectionStatement::Create {
                entries: parse_entries(p)?,
                name,
                if_not_exists,
            }
        }
        "ALTER" => {
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = p.parse_identifier()?.value;
            skip_on_cluster(p)?;
            let mut change = CollectionChange::default();
            if p.parse_keyword(Keyword::SET) {
                change.set = parse_entries(p)?;
            }
            if p.parse_keyword(Keyword::DELETE) {
                loop {
                    change.delete.push(parse_key(p)?);
                    if !p.consume_token(&Token::Comma) {
                        break;
                    }
                }
            }
            if change.set.is_empty() && change.delete.is_empty() {
                return Err(unexpected(
                    p,
                    &format!(
                        "SET key = value, … or DELETE key, … after ALTER NAMED COLLECTION {name}"
                    ),
                ));
            }
            CollectionStatement::Alter {
                name,
                if_exists,
                change,
            }
        }
        _ => {
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = p.parse_identifier()?.value;
            skip_on_cluster(p)?;
            CollectionStatement::Drop { name, if_exists }
        }
    };
    Ok(Some(Statement::NamedCollection(statement)))
}

fn skip_on_cluster(p: &mut Parser) -> Result<(), SqlError> {
    if p.parse_keywords(&[Keyword::ON, Keyword::CLUSTER]) {
        p.parse_identifier()?;
    }
    Ok(())
}

/// A key: an identifier, dotted for librdkafka-style names (`sasl.password`).
fn parse_key(p: &mut Parser) -> Result<String, SqlError> {
    let mut key = p.parse_identifier()?.value;
    while p.consume_token(&Token::Period) {
        key.push('.');
        key.push_str(&p.parse_identifier()?.value);
    }
    Ok(key)
}

/// `key = value [[NOT] OVERRIDABLE], …`
fn parse_entries(p: &mut Parser) -> Result<Vec<(String, CollectionEntry)>, SqlError> {
    let mut out = Vec::new();
    loop {
        let key = parse_key(p)?;
        p.expect_token(&Token::Eq)?;
        let value = parse_setting_value(p, &key)?;
        let overridable = if p.parse_keyword(Keyword::NOT) {
            if !is_word(&p.peek_token_ref().token, "OVERRIDABLE") {
                return Err(unexpected(p, &format!("OVERRIDABLE after {key} = … NOT")));
            }
            p.next_token();
            Some(false)
        } else if is_word(&p.peek_token_ref().token, "OVERRIDABLE") {
            p.next_token();
            Some(true)
        } else {
            None
        };
        out.push((key, CollectionEntry { value, overridable }));
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parse;

    fn collection(sql: &str) -> CollectionStatement {
        match parse(sql).expect("parses") {
            Statement::NamedCollection(c) => c,
            other => panic!("not a collection statement: {other:?}"),
        }
    }

    #[test]
    fn create_with_flags_and_on_cluster() {
        let c = collection(
            "CREATE NAMED COLLECTION IF NOT EXISTS kc ON CLUSTER main AS kafka_broker_list = 'b:9092' NOT OVERRIDABLE, kafka_max_block_size = 100 OVERRIDABLE, kafka_format = 'CSV';",
        );
        let CollectionStatement::Create {
            name,
            if_not_exists,
            entries,
        } = c
        else {
            panic!("not a create");
        };
        assert_eq!(name, "kc");
        assert!(if_not_exists);
        assert_eq!(
            entries,
            vec![
                (
                    "kafka_broker_list".to_string(),
                    CollectionEntry {
                        value: "b:9092".into(),
                        overridable: Some(false)
                    }
                ),
                (
                    "kafka_max_block_size".to_string(),
                    CollectionEntry {
                        value: "100".into(),
                        overridable: Some(true)
                    }
                ),
                (
                    "kafka_format".to_string(),
                    CollectionEntry {
                        value: "CSV".into(),
                        overridable: None
                    }
                ),
            ]
        );
    }

    #[test]
    fn alter_set_and_delete_and_drop() {
        let c = collection(
            "ALTER NAMED COLLECTION IF EXISTS kc SET kafka_client_id = 'x', sasl.password = 's' DELETE a, b.c",
        );
        let CollectionStatement::Alter {
            if_exists, change, ..
        } = c
        else {
            panic!("not an alter");
        };
        assert!(if_exists);
        assert_eq!(change.set.len(), 2);
        assert_eq!(change.set[1].0, "sasl.password");
        assert_eq!(change.delete, vec!["a".to_string(), "b.c".to_string()]);
        assert_eq!(
            collection("DROP NAMED COLLECTION IF EXISTS kc"),
            CollectionStatement::Drop {
                name: "kc".into(),
                if_exists: true
            }
        );
        assert_eq!(
            collection("show named collections"),
            CollectionStatement::Show
        );
    }

    #[test]
    fn bad_input_names_what_is_wrong() {
        let err = parse("ALTER NAMED COLLECTION kc").expect_err("nothing to do");
        assert!(err.to_string().contains("SET key = value"), "{err}");
        let err = parse("CREATE NAMED COLLECTION kc a = 1").expect_err("no AS");
        assert!(err.to_string().contains("AS key = value"), "{err}");
        let err = parse("CREATE NAMED COLLECTION kc AS a = 1 NOT").expect_err("NOT alone");
        assert!(err.to_string().contains("OVERRIDABLE"), "{err}");
        let err = parse("CREATE NAMED COLLECTION kc AS password = (").expect_err("bad value");
        assert!(err.to_string().contains("setting password"), "{err}");
        // Other statements are untouched.
        assert!(matches!(
            parse("DROP TABLE t").expect("parses"),
            Statement::DropTable { .. }
        ));
    }
}
