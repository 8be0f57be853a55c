//! Splits a `mysqldump`/`mariadb-dump` stream into statements, as the `mysql` client would:
//! statements end with the current delimiter outside strings, identifiers and comments;
//! `DELIMITER x` lines (around triggers, routines and events) change it and are not sent;
//! whole-line `--` and `#` comments between statements are dropped.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::BufRead;

/// One statement without its delimiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement's bytes (a dump may hold binary data inside string literals).
    pub sql: Vec<u8>,
    /// True when it was ended by a custom delimiter (a trigger, routine or event body that
    /// must be sent on its own).
    pub compound: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Normal,
    Single,
    Double,
    Backtick,
    Block,
}

/// The longest statement (or line) a reader accepts by default: 256 MiB. A dump holds statements
/// up to the server's `max_allowed_packet` (at most 1 GiB); mysqldump's extended inserts stay
/// near 1 MiB, so only a huge single value comes near this. The cap bounds the restore's memory.
pub const DEFAULT_MAX_STATEMENT_BYTES: usize = 256 << 20;

/// Iterator over the statements of a dump.
pub struct StatementReader<R> {
    reader: R,
    max_statement: usize,
    lines_read: u64,
    delimiter: Vec<u8>,
    state: State,
    current: Vec<u8>,
    line: Vec<u8>,
    ready: VecDeque<Statement>,
    eof: bool,
}

impl<R: BufRead> StatementReader<R> {
    /// Reads statements from `reader`, at most [`DEFAULT_MAX_STATEMENT_BYTES`] each.
    pub fn new(reader: R) -> Self {
        Self::with_max_statement(reader, DEFAULT_MAX_STATEMENT_BYTES)
    }

    /// Reads statements from `reader`; a statement or line longer than `max_statement` bytes is
    /// an error, before more than that is held in memory.
    pub fn with_max_statement(reader: R, max_statement: usize) -> Self {
        StatementReader {
            reader,
            max_statement,
            lines_read: 0,
            delimiter: b";".to_vec(),
            state: State::Normal,
            current: Vec::new(),
            line: Vec::new(),
            ready: VecDeque::new(),
            eof: false,
        }
    }

    fn emit(&mut self, tail: &[u8]) {
        let mut sql = std::mem::take(&mut self.current);
        sql.extend_from_slice(tail);
        let start = sql
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(sql.len());
        let end = sql
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(start, |i| i + 1);
        if start < end {
            sql.truncate(end);
            sql.drain(..start);
            self.ready.push_back(Statement {
                sql,
                compound: self.delimiter != b";",
            });
        }
    }

    fn at_statement_start(&self) -> bool {
        self.state == State::Normal && self.current.iter().all(u8::is_ascii_whitespace)
    }

    fn process_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        if self.at_statement_start() {
            let trimmed = trim_start(&line);
            if let Some(rest) = strip_prefix_ignore_case(trimmed, b"delimiter") {
                if rest.first().is_some_and(u8::is_ascii_whitespace) {
                    let token: Vec<u8> = trim_start(rest)
                        .iter()
                        .copied()
                        .take_while(|b| !b.is_ascii_whitespace())
                        .collect();
                    if !token.is_empty() {
                        self.delimiter = token;
                        self.current.clear();
                        self.line = line;
                        self.line.clear();
                        return;
                    }
                }
            }
            if is_line_comment(trimmed) {
                self.line = line;
                self.line.clear();
                return;
            }
        }
        let mut seg = 0;
        let mut i = 0;
        while i < line.len() {
            let c = line[i];
            match self.state {
                State::Normal => {
                    // The first byte decides before a slice comparison (a call per byte).
                    if c == self.delimiter[0] && line[i..].starts_with(&self.delimiter) {
                        let end = i;
                        i += self.delimiter.len();
                        self.emit(&line[seg..end]);
                        seg = i;
                        continue;
                    }
                    match c {
                        b'\'' => self.state = State::Single,
                        b'"' => self.state = State::Double,
                        b'`' => self.state = State::Backtick,
                        b'/' if line.get(i + 1) == Some(&b'*') => {
                            self.state = State::Block;
                            i += 1;
                        }
                        b'#' => {
                            self.current.extend_from_slice(&line[seg..i]);
                            self.current.push(b'\n');
                            seg = line.len();
                            break;
                        }
                        b'-' if line.get(i + 1) == Some(&b'-')
                            && line.get(i + 2).is_none_or(|b| b.is_ascii_whitespace()) =>
                        {
                            self.current.extend_from_slice(&line[seg..i]);
                            self.current.push(b'\n');
                            seg = line.len();
                            break;
                        }
                        _ => {}
                    }
                }
                State::Single | State::Double => {
                    let quote = if self.state == State::Single {
                        b'\''
                    } else {
                        b'"'
                    };
                    if c == b'\\' {
                        i += 1;
                    } else if c == quote {
                        self.state = State::Normal;
                    } else {
                        // Skip the plain bytes of the literal at once.
                        let plain = line[i + 1..]
                            .iter()
                            .position(|&b| b == quote || b == b'\\')
                            .unwrap_or(line.len() - i - 1);
                        i += plain;
                    }
                }
                State::Backtick => {
                    if c == b'`' {
                        self.state = State::Normal;
                    }
                }
                State::Block => {
                    if c == b'*' && line.get(i + 1) == Some(&b'/') {
                        self.state = State::Normal;
                        i += 1;
                    }
                }
            }
            i += 1;
        }
        if seg < line.len() {
            self.current.extend_from_slice(&line[seg..]);
        }
        self.line = line;
        self.line.clear();
    }
}

impl<R: BufRead> Iterator for StatementReader<R> {
    type Item = std::io::Result<Statement>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(stmt) = self.ready.pop_front() {
                return Some(Ok(stmt));
            }
            if self.eof {
                return None;
            }
            // Read no further than one byte past the cap, so an endless line cannot grow memory.
            let held = self.current.len() + self.line.len();
            let budget = (self.max_statement + 1).saturating_sub(held) as u64;
            let read =
                std::io::Read::take(&mut self.reader, budget).read_until(b'\n', &mut self.line);
            if self.current.len() + self.line.len() > self.max_statement {
                self.eof = true;
                return Some(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "a statement near line {} of the dump is longer than {} bytes, the \
                         restore's limit; was the file a SQL dump?",
                        self.lines_read + 1,
                        self.max_statement
                    ),
                )));
            }
            self.lines_read += 1;
            match read {
                Ok(0) => {
                    self.eof = true;
                    // A last statement without delimiter is still sent, as the client does.
                    self.emit(&[]);
                }
                Ok(_) => self.process_line(),
                Err(e) => {
                    self.eof = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

fn trim_start(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    &s[start..]
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    if s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

fn is_line_comment(trimmed: &[u8]) -> bool {
    trimmed.starts_with(b"#")
        || (trimmed.starts_with(b"--") && trimmed.get(2).is_none_or(|b| b.is_ascii_whitespace()))
}

/// A statement that is not valid UTF-8 outside its string literals and cannot be sent as text.
#[derive(Debug, thiserror::Error)]
#[error("statement is not valid UTF-8 outside string literals (starts with {prefix:?})")]
pub struct NotText {
    /// The first bytes of the statement, for the message.
    pub prefix: String,
}

/// The statement as text for the MySQL protocol: unchanged when it is UTF-8; otherwise each
/// single-quoted literal holding non-UTF-8 bytes is rewritten as the hex literal `X'..'` of the
/// same bytes, so binary column values survive a text-only client API.
pub fn as_text(sql: &[u8]) -> Result<Cow<'_, str>, NotText> {
    if let Ok(text) = std::str::from_utf8(sql) {
        return Ok(Cow::Borrowed(text));
    }
    let not_text = || NotText {
        prefix: String::from_utf8_lossy(&sql[..sql.len().min(60)]).into_owned(),
    };
    let mut out = String::with_capacity(sql.len() * 2);
    let mut i = 0;
    let mut plain_start = 0;
    let mut in_other: Option<u8> = None;
    while i < sql.len() {
        let c = sql[i];
        if let Some(q) = in_other {
            if c == b'\\' && q == b'"' {
                i += 1;
            } else if c == q {
                in_other = None;
            }
            i += 1;
            continue;
        }
        match c {
            b'"' | b'`' => in_other = Some(c),
            b'\'' => {
                let (value, end) = decode_single_quoted(sql, i);
                let raw = &sql[i..end];
                out.push_str(std::str::from_utf8(&sql[plain_start..i]).map_err(|_| not_text())?);
                match std::str::from_utf8(raw) {
                    Ok(text) => out.push_str(text),
                    Err(_) => {
                        out.push_str("X'");
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        for b in value {
                            out.push(char::from(HEX[usize::from(b >> 4)]));
                            out.push(char::from(HEX[usize::from(b & 15)]));
                        }
                        out.push('\'');
                    }
                }
                i = end;
                plain_start = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(std::str::from_utf8(&sql[plain_start..]).map_err(|_| not_text())?);
    Ok(Cow::Owned(out))
}

/// Decodes the single-quoted literal starting at `start` with MySQL's escapes; returns its
/// value and the index just past its closing quote (or the end of input).
fn decode_single_quoted(sql: &[u8], start: usize) -> (Vec<u8>, usize) {
    let mut value = Vec::new();
    let mut i = start + 1;
    while i < sql.len() {
        match sql[i] {
            b'\\' if i + 1 < sql.len() => {
                let e = sql[i + 1];
                match e {
                    b'0' => value.push(0),
                    b'b' => value.push(8),
                    b'n' => value.push(b'\n'),
                    b'r' => value.push(b'\r'),
                    b't' => value.push(b'\t'),
                    b'Z' => value.push(26),
                    // Kept with the backslash, as MySQL does outside LIKE patterns.
                    b'%' | b'_' => value.extend_from_slice(&[b'\\', e]),
                    other => value.push(other),
                }
                i += 2;
            }
            b'\'' if sql.get(i + 1) == Some(&b'\'') => {
                value.push(b'\'');
                i += 2;
            }
            b'\'' => return (value, i + 1),
            other => {
                value.push(other);
                i += 1;
            }
        }
    }
    (value, i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlong_statement_or_line_is_an_error_not_unbounded_memory() {
        let ok = b"INSERT INTO t VALUES (1);\nINSERT INTO t VALUES (2);\n";
        let all: Vec<_> = StatementReader::with_max_statement(&ok[..], 30)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(all.len(), 2);

        // One line without a newline, far longer than the cap.
        let endless = vec![b'x'; 10_000];
        let mut reader = StatementReader::with_max_statement(&endless[..], 100);
        let err = reader.next().unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("longer than 100 bytes"), "{err}");
        assert!(reader.next().is_none());

        // A statement spread over many short lines.
        let spread = "INSERT INTO t VALUES\n".to_owned() + &"(1),\n".repeat(100) + "(2);\n";
        let mut reader = StatementReader::with_max_statement(spread.as_bytes(), 200);
        let err = reader.next().unwrap().unwrap_err();
        assert!(err.to_string().contains("near line"), "{err}");
    }

    fn split(dump: &str) -> Vec<(String, bool)> {
        StatementReader::new(dump.as_bytes())
            .map(|s| {
                let s = s.unwrap();
                (String::from_utf8(s.sql).unwrap(), s.compound)
            })
            .collect()
    }

    #[test]
    fn plain_statements_and_comments() {
        let dump = "-- MySQL dump\n/*!40101 SET NAMES utf8mb4 */;\n\n--\n-- Table structure\n--\nCREATE TABLE `t` (\n  `id` int\n);\nINSERT INTO `t` VALUES (1,'a;b'),(2,'it''s'),(3,'x\\';y');\n-- Dump completed\n";
        assert_eq!(
            split(dump),
            vec![
                ("/*!40101 SET NAMES utf8mb4 */".to_owned(), false),
                ("CREATE TABLE `t` (\n  `id` int\n)".to_owned(), false),
                (
                    "INSERT INTO `t` VALUES (1,'a;b'),(2,'it''s'),(3,'x\\';y')".to_owned(),
                    false
                ),
            ]
        );
    }

    #[test]
    fn delimiter_blocks_become_compound_statements() {
        let dump = "DELIMITER ;;\n/*!50003 CREATE*/ /*!50003 TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN\n  SET NEW.v = 'a;b';\n  SET NEW.w = 1;\nEND */;;\nDELIMITER ;\nSELECT 1;\n";
        let got = split(dump);
        assert_eq!(got.len(), 2);
        assert!(got[0].0.starts_with("/*!50003 CREATE*/"));
        assert!(got[0].0.ends_with("END */"));
        assert!(got[0].1);
        assert_eq!(got[1], ("SELECT 1".to_owned(), false));
    }

    #[test]
    fn semicolons_in_identifiers_comments_and_double_quotes_do_not_split() {
        let dump = "SELECT `a;b`, \"c;\\\"d\" /* e; */ FROM t # f;\n WHERE 1;\nSELECT 2";
        let got = split(dump);
        assert_eq!(got.len(), 2);
        assert!(got[0].0.contains("WHERE 1"));
        assert_eq!(got[1].0, "SELECT 2");
    }

    /// `mysqldump`'s escaping of a string value.
    fn escape(value: &[u8]) -> Vec<u8> {
        let mut out = vec![b'\''];
        for &b in value {
            match b {
                0 => out.extend_from_slice(b"\\0"),
                b'\'' => out.extend_from_slice(b"\\'"),
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                26 => out.extend_from_slice(b"\\Z"),
                other => out.push(other),
            }
        }
        out.push(b'\'');
        out
    }

    fn insert(rows: &[Vec<u8>]) -> Vec<u8> {
        let mut sql = b"INSERT INTO `t` VALUES ".to_vec();
        for (i, value) in rows.iter().enumerate() {
            if i > 0 {
                sql.push(b',');
            }
            sql.extend_from_slice(format!("({i},").as_bytes());
            sql.extend_from_slice(&escape(value));
            sql.push(b')');
        }
        sql
    }

    proptest::proptest! {
        #[test]
        fn escaped_values_decode_to_themselves(value in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let literal = escape(&value);
            let (decoded, end) = decode_single_quoted(&literal, 0);
            proptest::prop_assert_eq!(decoded, value);
            proptest::prop_assert_eq!(end, literal.len());
        }

        #[test]
        fn dumps_split_back_into_their_statements(
            tables in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..24), 1..6),
                1..6,
            ),
            with_trigger in proptest::bool::ANY,
        ) {
            let mut dump = b"-- MySQL dump\n/*!40101 SET NAMES utf8mb4 */;\n".to_vec();
            let mut want: Vec<(Vec<u8>, bool)> = vec![(b"/*!40101 SET NAMES utf8mb4 */".to_vec(), false)];
            for rows in &tables {
                let stmt = insert(rows);
                dump.extend_from_slice(b"--\n-- Dumping data\n--\n\n");
                dump.extend_from_slice(&stmt);
                dump.extend_from_slice(b";\n");
                want.push((stmt, false));
                if with_trigger {
                    let body = b"CREATE TRIGGER x BEFORE INSERT ON t FOR EACH ROW BEGIN\nSET NEW.v = ';';\nSET NEW.w = 1;\nEND".to_vec();
                    dump.extend_from_slice(b"DELIMITER ;;\n");
                    dump.extend_from_slice(&body);
                    dump.extend_from_slice(b" ;;\nDELIMITER ;\n");
                    want.push((body, true));
                }
            }
            dump.extend_from_slice(b"-- Dump completed on 2026-01-01\n");
            let got: Vec<(Vec<u8>, bool)> = StatementReader::new(&dump[..])
                .map(|s| s.map(|s| (s.sql, s.compound)))
                .collect::<Result<_, _>>()
                .unwrap();
            proptest::prop_assert_eq!(&got, &want);
            for (sql, _) in &got {
                // Every statement can be sent as text; binary literals turn into hex.
                let text = as_text(sql);
                proptest::prop_assert!(text.is_ok());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            for stmt in StatementReader::new(&data[..]) {
                let stmt = stmt.unwrap();
                let _ = as_text(&stmt.sql);
            }
        }
    }

    #[test]
    fn binary_literals_become_hex() {
        let sql = b"INSERT INTO t VALUES (1,'a\\0\xff\\'\xfe','ok')";
        let text = as_text(sql).unwrap();
        assert_eq!(text, "INSERT INTO t VALUES (1,X'6100FF27FE','ok')");
        assert!(matches!(as_text(b"SELECT 1"), Ok(Cow::Borrowed(_))));
        assert!(as_text(b"SELECT \xff").is_err());
    }
}
