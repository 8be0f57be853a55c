//! mysqldump's extended `INSERT`s as `LOAD DATA LOCAL INFILE` rows.
//!
//! The server parses a multi-row `INSERT` into one expression per value before it stores a
//! field; `LOAD DATA` stores each field straight from its text, which costs the server about
//! 40 % less CPU on the reference dump (`bench/datapath/README.md`). The rows are converted on
//! the fly into `LOAD DATA`'s default format (fields ended by a tab, rows by a newline,
//! backslash escapes, `\N` for NULL). Only the literal forms whose meaning is the same in both
//! statements are converted: `NULL`, decimal numbers and single-quoted strings, which is what
//! mysqldump and mariadb-dump write for every column type except BIT (`b'..'`) and binary
//! columns under `--hex-blob` (`0x..`) or MySQL 8's `_binary '..'`. Any other form leaves the
//! whole statement to be sent as it is.

/// Where the rows of an `INSERT` go: the table and the column list, as the dump wrote them
/// (backquoted identifiers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowsTarget {
    /// The table, with its backquotes.
    pub table: String,
    /// The column list with its parentheses, when the statement had one.
    pub columns: Option<String>,
}

/// The name the loader asks the server to request; the client answers only this name, with
/// rows from memory, never from a file.
pub const ROWS_FILE: &str = "stash-restore-rows";

impl RowsTarget {
    /// The `LOAD DATA` statement for these rows, read in `charset` (the session's client
    /// character set, so strings convert as the `INSERT`'s literals would).
    pub fn load_statement(&self, charset: &str) -> String {
        format!(
            "LOAD DATA LOCAL INFILE '{ROWS_FILE}' INTO TABLE {} CHARACTER SET {charset} \
             FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' \
             LINES STARTING BY '' TERMINATED BY '\\n' {}",
            self.table,
            self.columns.as_deref().unwrap_or_default()
        )
    }
}

pub(crate) fn skip_ws(sql: &[u8], mut i: usize) -> usize {
    while sql.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

pub(crate) fn keyword(sql: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    let end = i + word.len();
    let matches = sql.get(i..end)?.eq_ignore_ascii_case(word);
    let bounded = sql
        .get(end)
        .is_none_or(|b| !b.is_ascii_alphanumeric() && *b != b'_');
    (matches && bounded).then_some(end)
}

/// A backquoted identifier starting at `i` (doubled backquotes inside); returns its end.
pub(crate) fn quoted_identifier(sql: &[u8], i: usize) -> Option<usize> {
    if sql.get(i) != Some(&b'`') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match sql.get(j)? {
            b'`' if sql.get(j + 1) == Some(&b'`') => j += 2,
            b'`' => return (j > i + 1).then_some(j + 1),
            _ => j += 1,
        }
    }
}

/// Parses `INSERT INTO `t` [(`a`, ...)] VALUES`; returns the target and where the first row
/// starts. Anything else (`INSERT IGNORE`, `REPLACE`, `SELECT`, unquoted names) is `None`.
pub fn parse_insert_head(sql: &[u8]) -> Option<(RowsTarget, usize)> {
    let i = skip_ws(sql, 0);
    let i = skip_ws(sql, keyword(sql, i, b"INSERT")?);
    let i = skip_ws(sql, keyword(sql, i, b"INTO")?);
    let table_end = quoted_identifier(sql, i)?;
    let table = std::str::from_utf8(&sql[i..table_end]).ok()?.to_owned();
    let mut i = skip_ws(sql, table_end);
    let mut columns = None;
    if sql.get(i) == Some(&b'(') {
        let start = i;
        i = skip_ws(sql, i + 1);
        loop {
            i = skip_ws(sql, quoted_identifier(sql, i)?);
            match sql.get(i)? {
                b',' => i = skip_ws(sql, i + 1),
                b')' => break,
                _ => return None,
            }
        }
        columns = Some(std::str::from_utf8(&sql[start..=i]).ok()?.to_owned());
        i = skip_ws(sql, i + 1);
    }
    let i = skip_ws(sql, keyword(sql, i, b"VALUES")?);
    Some((RowsTarget { table, columns }, i))
}

/// Appends the rows of the `VALUES` list at `sql[start..]` to `out` in `LOAD DATA`'s format and
/// returns how many there were; `None`, with `out` as it was, when a value is not a plain
/// literal or the list is malformed.
pub fn append_rows(sql: &[u8], start: usize, out: &mut Vec<u8>) -> Option<u64> {
    let before = out.len();
    let rows = append_rows_unchecked(sql, start, out);
    if rows.is_none() {
        out.truncate(before);
    }
    rows
}

fn append_rows_unchecked(sql: &[u8], start: usize, out: &mut Vec<u8>) -> Option<u64> {
    let mut rows = 0u64;
    let mut i = start;
    loop {
        i = skip_ws(sql, i);
        if sql.get(i) != Some(&b'(') {
            return None;
        }
        i += 1;
        loop {
            i = append_value(sql, skip_ws(sql, i), out)?;
            i = skip_ws(sql, i);
            match sql.get(i)? {
                b',' => out.push(b'\t'),
                b')' => {
                    out.push(b'\n');
                    break;
                }
                _ => return None,
            }
            i += 1;
        }
        rows += 1;
        i = skip_ws(sql, i + 1);
        match sql.get(i) {
            None => return Some(rows),
            Some(b',') => i += 1,
            Some(_) => return None,
        }
    }
}

/// One value: `NULL`, a decimal number, or a single-quoted string; returns the index past it.
fn append_value(sql: &[u8], i: usize, out: &mut Vec<u8>) -> Option<usize> {
    match sql.get(i)? {
        b'\'' => append_string(sql, i, out),
        b'N' | b'n' => {
            let end = keyword(sql, i, b"NULL")?;
            out.extend_from_slice(b"\\N");
            Some(end)
        }
        b'-' | b'0'..=b'9' => {
            let end = number_end(sql, i)?;
            out.extend_from_slice(&sql[i..end]);
            Some(end)
        }
        _ => None,
    }
}

/// `-?digits[.digits][e[+-]digits]` (at least one digit before any exponent); a number must
/// end at a delimiter, so `0x1F` or `1abc` are not numbers.
fn number_end(sql: &[u8], mut i: usize) -> Option<usize> {
    let digits = |sql: &[u8], mut i: usize| {
        let start = i;
        while sql.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i, i - start)
    };
    if sql.get(i) == Some(&b'-') {
        i += 1;
    }
    let (mut j, whole) = digits(sql, i);
    let mut fraction = 0;
    if sql.get(j) == Some(&b'.') {
        (j, fraction) = digits(sql, j + 1);
    }
    if whole + fraction == 0 {
        return None;
    }
    if matches!(sql.get(j), Some(b'e' | b'E')) {
        let mut k = j + 1;
        if matches!(sql.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        let (end, exponent) = digits(sql, k);
        if exponent == 0 {
            return None;
        }
        j = end;
    }
    match sql.get(j) {
        None | Some(b',' | b')') => Some(j),
        Some(b) if b.is_ascii_whitespace() => Some(j),
        Some(_) => None,
    }
}

/// Decodes the single-quoted literal at `i` with the server's escapes (as
/// `statements::decode_single_quoted`) and writes its bytes escaped for `LOAD DATA`.
fn append_string(sql: &[u8], i: usize, out: &mut Vec<u8>) -> Option<usize> {
    let put = |b: u8, out: &mut Vec<u8>| match b {
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\t' => out.extend_from_slice(b"\\t"),
        b'\n' => out.extend_from_slice(b"\\n"),
        0 => out.extend_from_slice(b"\\0"),
        other => out.push(other),
    };
    let mut j = i + 1;
    loop {
        // Copy the run of bytes that need no attention at once.
        let run = sql
            .get(j..)?
            .iter()
            .position(|b| matches!(b, b'\\' | b'\'' | b'\t' | b'\n' | 0))?;
        out.extend_from_slice(&sql[j..j + run]);
        j += run;
        match sql[j] {
            b'\\' => {
                let e = *sql.get(j + 1)?;
                match e {
                    b'0' => put(0, out),
                    b'b' => put(8, out),
                    b'n' => put(b'\n', out),
                    b'r' => put(b'\r', out),
                    b't' => put(b'\t', out),
                    b'Z' => put(26, out),
                    // The server keeps the backslash of `\%` and `\_` outside LIKE patterns.
                    b'%' | b'_' => {
                        put(b'\\', out);
                        put(e, out);
                    }
                    other => put(other, out),
                }
                j += 2;
            }
            b'\'' if sql.get(j + 1) == Some(&b'\'') => {
                out.push(b'\'');
                j += 2;
            }
            b'\'' => return Some(j + 1),
            other => {
                put(other, out);
                j += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `LOAD DATA`'s reading of one row in the default format (the server's `READ_INFO` for
    /// single-byte data): fields split at unescaped tabs, `\N` alone is NULL.
    fn read_row(line: &[u8]) -> Row {
        let mut fields = Vec::new();
        let mut field = Vec::new();
        let mut null = false;
        let mut i = 0;
        while i < line.len() {
            match line[i] {
                b'\\' => {
                    let e = line[i + 1];
                    if e == b'N'
                        && field.is_empty()
                        && matches!(line.get(i + 2), None | Some(b'\t'))
                    {
                        null = true;
                    } else {
                        field.push(match e {
                            b'0' => 0,
                            b'b' => 8,
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'Z' => 26,
                            other => other,
                        });
                    }
                    i += 2;
                    continue;
                }
                b'\t' => {
                    fields.push((!null).then(|| std::mem::take(&mut field)));
                    field.clear();
                    null = false;
                }
                other => field.push(other),
            }
            i += 1;
        }
        fields.push((!null).then_some(field));
        fields
    }

    /// A row as `LOAD DATA` reads it: each field's bytes, `None` for NULL.
    type Row = Vec<Option<Vec<u8>>>;

    fn rows_of(sql: &[u8]) -> Option<(RowsTarget, Vec<Row>)> {
        let (target, start) = parse_insert_head(sql)?;
        let mut out = Vec::new();
        let n = append_rows(sql, start, &mut out)?;
        let rows: Vec<_> = out
            .strip_suffix(b"\n")
            .unwrap_or(&out)
            .split(|b| *b == b'\n')
            .map(read_row)
            .collect();
        assert_eq!(rows.len() as u64, n);
        Some((target, rows))
    }

    fn text(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    #[test]
    fn mysqldump_rows_convert_value_by_value() {
        let sql = b"INSERT INTO `t` VALUES\n(1,-2.5e-3,'it\\'s','a\\\\b\\tc\\nd\\re\\0f\\Zg',NULL,''),\n(0,0.5,'',' NULL ','\\\\N','x''y\\%\\_')";
        let (target, rows) = rows_of(sql).unwrap();
        assert_eq!(target.table, "`t`");
        assert_eq!(target.columns, None);
        assert_eq!(
            rows,
            vec![
                vec![
                    text("1"),
                    text("-2.5e-3"),
                    text("it's"),
                    Some(b"a\\b\tc\nd\re\0f\x1ag".to_vec()),
                    None,
                    text(""),
                ],
                vec![
                    text("0"),
                    text("0.5"),
                    text(""),
                    text(" NULL "),
                    text("\\N"),
                    text("x'y\\%\\_"),
                ],
            ]
        );
    }

    #[test]
    fn column_lists_and_quoted_names_are_kept() {
        let sql = b"INSERT INTO `we``ird` (`a`, `b c`) VALUES (1,2)";
        let (target, rows) = rows_of(sql).unwrap();
        assert_eq!(target.table, "`we``ird`");
        assert_eq!(target.columns.as_deref(), Some("(`a`, `b c`)"));
        assert_eq!(rows, vec![vec![text("1"), text("2")]]);
        assert!(target
            .load_statement("utf8mb4")
            .starts_with("LOAD DATA LOCAL INFILE 'stash-restore-rows' INTO TABLE `we``ird` CHARACTER SET utf8mb4"));
        assert!(target.load_statement("utf8mb4").ends_with("(`a`, `b c`)"));
    }

    #[test]
    fn other_literal_forms_are_left_to_the_insert() {
        for sql in [
            "INSERT INTO `t` VALUES (0x1F)",
            "INSERT INTO `t` VALUES (X'1F')",
            "INSERT INTO `t` VALUES (b'101')",
            "INSERT INTO `t` VALUES (_binary 'x')",
            "INSERT INTO `t` VALUES (1abc)",
            "INSERT INTO `t` VALUES (NOW())",
            "INSERT INTO `t` VALUES (DEFAULT)",
            "INSERT INTO `t` VALUES (\"double\")",
            "INSERT INTO `t` VALUES (1,'unterminated)",
            "INSERT INTO `t` VALUES (1),",
            "INSERT INTO `t` VALUES (1) ON DUPLICATE KEY UPDATE a=1",
            "INSERT INTO `t` VALUES (1e)",
            "INSERT INTO `t` VALUES (-)",
            "INSERT INTO `t` VALUES (+1)",
            "INSERT INTO `t` VALUES (.5)",
            "INSERT INTO `t` VALUES (NULLX)",
            "INSERT IGNORE INTO `t` VALUES (1)",
            "REPLACE INTO `t` VALUES (1)",
            "INSERT INTO t VALUES (1)",
            "INSERT INTO `t` SELECT 1",
            "INSERT INTO `t` (`a` VALUES (1)",
        ] {
            assert!(rows_of(sql.as_bytes()).is_none(), "{sql}");
        }
        let mut out = b"kept".to_vec();
        assert_eq!(append_rows(b"(1,'a'),(0x1F)", 0, &mut out), None);
        assert_eq!(out, b"kept");
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

    proptest::proptest! {
        #[test]
        fn any_escaped_bytes_load_back_to_themselves(
            rows in proptest::collection::vec(
                proptest::collection::vec(proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..40)), 1..5),
                1..5,
            ),
        ) {
            let width = rows[0].len();
            let mut sql = b"INSERT INTO `t` VALUES ".to_vec();
            let mut want = Vec::new();
            for (r, row) in rows.iter().enumerate() {
                if r > 0 {
                    sql.extend_from_slice(b",\n");
                }
                sql.push(b'(');
                let mut got_row = Vec::new();
                for c in 0..width {
                    if c > 0 {
                        sql.push(b',');
                    }
                    let value = row.get(c).cloned().flatten();
                    match &value {
                        Some(v) => sql.extend_from_slice(&escape(v)),
                        None => sql.extend_from_slice(b"NULL"),
                    }
                    got_row.push(value);
                }
                sql.push(b')');
                want.push(got_row);
            }
            let (_, got) = rows_of(&sql).unwrap();
            proptest::prop_assert_eq!(got, want);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let mut sql = b"INSERT INTO `t` VALUES ".to_vec();
            sql.extend_from_slice(&data);
            let _ = rows_of(&sql);
        }
    }
}
