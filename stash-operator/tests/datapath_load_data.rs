//! The protocol loader's `LOAD DATA` path against a real MariaDB: tricky values come back
//! exactly (`CHECKSUM TABLE` and `SHOW CREATE TABLE` equal to the source) from every dump shape
//! mariadb-dump writes, a server that refuses `LOCAL INFILE` gets the statements instead, and a
//! row `LOAD DATA LOCAL` would silently skip fails the restore as the `INSERT` would.

mod datapath_support;
use datapath_support::{direct_dump, target};

use stash_operator::datapath::loader::{load_with_protocol, LoadError, LoadStats};
use stash_operator::datapath::mysql_client::DbTarget;
use stash_operator::datapath::parallel_loader::load_by_table;
use stash_testkit::providers::MysqlServer;

type Loader = fn(&[u8], &DbTarget) -> Result<LoadStats, LoadError>;

/// Both loaders that convert rows: one connection, and two row connections taking batches in
/// turn.
const LOADERS: [(&str, Loader); 2] = [
    ("one connection", |dump, target| {
        load_with_protocol(dump, target)
    }),
    ("parallel", |dump, target| load_by_table(dump, target, 2)),
];

/// Every literal form a dump holds: binary bytes, NULLs, quotes, backslashes, tabs, newlines,
/// `\N` and `NULL` as text, empty strings, unicode in utf8mb4 and latin1 columns, doubles at
/// their limits (FLOATs only where mysqldump prints them exactly, and no -0: plain `mysql <
/// dump` does not restore those either), decimals, dates, enums, BIT (`b'..'`, left to the INSERT), a generated column,
/// secondary and unique keys, and a trigger.
const SEED: &str = r#"
SET NAMES utf8mb4; CREATE DATABASE tricky; USE tricky;
CREATE TABLE t (
  id INT PRIMARY KEY, s VARCHAR(100) CHARACTER SET utf8mb4, l VARCHAR(100) CHARACTER SET latin1,
  b VARBINARY(64), bl BLOB, f FLOAT, d DOUBLE, m DECIMAL(30,10), u BIGINT UNSIGNED, n BIGINT,
  dt DATETIME(6), da DATE, y YEAR, e ENUM('a','b','1'), st SET('x','y'), j LONGTEXT,
  g INT AS (id * 2) VIRTUAL, KEY ks (s), UNIQUE KEY ul (l, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO t (id, s, l, b, bl, f, d, m, u, n, dt, da, y, e, st, j) VALUES
 (1, 'it''s "q" \\ back\tslash\nnew\rline', 'café', 0x00FF5C275C4E0A09, 0x0D0A1A00, -2.25,
  1.7976931348623157e308, -12345678901234567890.0123456789, 18446744073709551615,
  -9223372036854775808, '2026-12-05 01:02:03.456789', '1000-01-01', 1901, '1', 'x,y',
  '{"a": "\\u00e9"}'),
 (2, '', '', '', '', 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL, '', ''),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'a', NULL, NULL),
 (4, '\\N', 'NULL', 0x5C, 0x5C5C, 1.5, 2.2250738585072014e-308, 0.0000000001, 1, -1,
  '9999-12-31 23:59:59.999999', '9999-12-31', 2155, 'b', 'y', 'null'),
 (5, '😀 中文 \\% \\_ ; \Z \0', '½', 0xE05C74F4, 0x80, 0.1, 0.1, 0.5, 42, 42,
  '2000-02-29 00:00:00', '2000-02-29', 2000, 'a', 'x', '');
INSERT INTO t (id, s, b) SELECT 100 + seq, CONCAT('row ', seq, '\t', seq % 256), UNHEX(SHA2(seq, 256))
  FROM seq_1_to_3000;
CREATE TABLE bits (id INT PRIMARY KEY, bt BIT(10)) ENGINE=InnoDB;
INSERT INTO bits VALUES (1, b'1010101010'), (2, b'0'), (3, NULL);
CREATE TABLE audit (n INT) ENGINE=InnoDB;
CREATE TRIGGER t_ins AFTER INSERT ON t FOR EACH ROW INSERT INTO audit VALUES (NEW.id);
"#;

fn definitions(server: &MysqlServer) -> String {
    server
        .execute("SHOW CREATE TABLE tricky.t; SHOW CREATE TABLE tricky.bits; SHOW CREATE TABLE tricky.audit")
        .unwrap()
}

/// `(LOAD DATA statements, INSERT statements)` the server has run since it started.
fn loads_and_inserts(server: &MysqlServer) -> (u64, u64) {
    let out = server
        .execute("SHOW GLOBAL STATUS WHERE Variable_name IN ('Com_load', 'Com_insert')")
        .unwrap();
    let value = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    (value("Com_load"), value("Com_insert"))
}

#[test]
fn tricky_values_load_exactly_from_every_dump_shape() {
    let source = MysqlServer::start().expect("source");
    source.execute(SEED).expect("seed");
    let want = source.checksums().unwrap();
    let want_definitions = definitions(&source);
    for (name, load) in LOADERS {
        let fresh = MysqlServer::start().expect("target");
        for args in [
            "--databases tricky --triggers",
            "--databases tricky --triggers --hex-blob",
            "--databases tricky --triggers --skip-extended-insert",
            "--databases tricky --triggers --complete-insert",
        ] {
            let (loads_before, _) = loads_and_inserts(&fresh);
            let stats = load(&direct_dump(&source, args)[..], &target(&fresh))
                .unwrap_or_else(|e| panic!("{name}, {args}: {e}"));
            assert!(stats.statements > 0);
            assert_eq!(fresh.checksums().unwrap(), want, "{name}, {args}");
            assert_eq!(definitions(&fresh), want_definitions, "{name}, {args}");
            let (loads, _) = loads_and_inserts(&fresh);
            // Table `t`'s rows went as LOAD DATA except under `--hex-blob` (`0x..` stays an
            // INSERT, as `bits`' `b'..'` always does).
            assert_eq!(
                loads > loads_before,
                !args.contains("hex-blob"),
                "{name}, {args}"
            );
        }
    }
}

#[test]
fn rows_of_plain_tables_go_as_load_data_and_stay_exact() {
    let source = MysqlServer::start().expect("source");
    source
        .execute(
            "CREATE DATABASE plain; USE plain; CREATE TABLE plain.p (id INT PRIMARY KEY, v VARBINARY(40), \
             s TEXT, KEY kv (v)) ENGINE=InnoDB; INSERT INTO plain.p SELECT seq, \
             UNHEX(SHA2(seq, 256)), REPEAT(CONCAT(seq, '\\\\\\t\\'\\n'), seq % 7) FROM seq_1_to_50000",
        )
        .unwrap();
    let dump = direct_dump(&source, "--databases plain");
    // More than one batch of rows, so the parallel loader spreads them over both connections.
    assert!(dump.len() > 3 << 20, "{} bytes", dump.len());
    for (name, load) in LOADERS {
        let fresh = MysqlServer::start().expect("target");
        load(&dump[..], &target(&fresh)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            fresh.checksums().unwrap(),
            source.checksums().unwrap(),
            "{name}"
        );
        let (loads, inserts) = loads_and_inserts(&fresh);
        assert!(loads >= 2, "{name}: rows were not loaded as LOAD DATA");
        assert_eq!(inserts, 0, "{name}: rows went as INSERT statements");
        // The statistics were computed once the rows were in, and the definition is the dump's.
        let rows: u64 = fresh
            .execute("SELECT n_rows FROM mysql.innodb_table_stats WHERE table_name = 'p'")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            rows > 10_000,
            "{name}: statistics not computed: {rows} rows"
        );
        assert!(
            !fresh
                .execute("SHOW CREATE TABLE plain.p")
                .unwrap()
                .contains("STATS_AUTO_RECALC"),
            "{name}"
        );
    }
}

#[test]
fn a_server_refusing_local_infile_gets_the_statements() {
    let source = MysqlServer::start().expect("source");
    source.execute(SEED).expect("seed");
    let dump = direct_dump(&source, "--databases tricky --triggers");
    for (name, load) in LOADERS {
        let fresh = MysqlServer::start_with_args(&["--local-infile=0"]).expect("target");
        load(&dump[..], &target(&fresh)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            fresh.checksums().unwrap(),
            source.checksums().unwrap(),
            "{name}"
        );
        assert_eq!(loads_and_inserts(&fresh).0, 0, "{name}");
    }
}

#[test]
fn a_duplicate_key_fails_the_restore_as_the_insert_would() {
    // LOAD DATA LOCAL skips a duplicate with a warning; the restore must not.
    let dump =
        "CREATE DATABASE d; USE d;\nCREATE TABLE `t` (`id` int PRIMARY KEY) ENGINE=InnoDB;\n\
                INSERT INTO `t` VALUES (1),(2);\nINSERT INTO `t` VALUES (2),(3);\n";
    for (name, load) in LOADERS {
        let fresh = MysqlServer::start().expect("target");
        let err = load(dump.as_bytes(), &target(&fresh)).unwrap_err();
        assert_eq!(err.reason(), "StatementFailed", "{name}");
        assert!(err.to_string().contains("3 of 4 stored"), "{name}: {err}");
        assert!(err.to_string().contains("`t`"), "{name}: {err}");
    }
}

#[test]
fn a_failure_in_a_later_batch_fails_the_parallel_restore() {
    // Rows of one table over several batches (so both row connections take some), with a
    // duplicate key in the last one: the restore fails, naming the table and the row, and does
    // not hang.
    let mut dump = String::from(
        "CREATE DATABASE d; USE d;\nCREATE TABLE `t` (`id` int PRIMARY KEY, `s` TEXT) ENGINE=InnoDB;\n",
    );
    let filler = "x".repeat(200);
    for chunk in 0..100u32 {
        dump.push_str("INSERT INTO `t` VALUES ");
        let rows: Vec<String> = (0..500u32)
            .map(|i| format!("({},'{filler}')", chunk * 500 + i))
            .collect();
        dump.push_str(&rows.join(","));
        dump.push_str(";\n");
    }
    dump.push_str("INSERT INTO `t` VALUES (10,'dup');\nCREATE TABLE `after` (`id` int);\n");
    let fresh = MysqlServer::start().expect("target");
    let err = load_by_table(dump.as_bytes(), &target(&fresh), 2).unwrap_err();
    assert_eq!(err.reason(), "StatementFailed");
    assert!(err.to_string().contains("rows of `t`"), "{err}");
    assert!(err.to_string().contains("Duplicate entry '10'"), "{err}");
}
