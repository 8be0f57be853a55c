//! InnoDB statistics recalculated once per restored table instead of throughout its load.
//!
//! InnoDB recalculates a table's persistent statistics in the background after 10 % of its rows
//! changed. While a large transaction inserts into the table, MariaDB 10.11's background task
//! keeps retrying (its timer threads took 3.8 s of the server's 16 s of CPU for the reference
//! dump loaded in 64 MiB transactions, and 11 s of 20 s when one `LOAD DATA` filled each table;
//! `bench/datapath/README.md`). So a table the dump creates gets `STATS_AUTO_RECALC=0` right after
//! its `CREATE TABLE`; once its rows are in, the option goes back to the default and `ANALYZE
//! TABLE` computes its statistics once. Both `ALTER`s change only metadata (instant), and the
//! table ends with the definition the dump gave it.

use super::load_data::{keyword, quoted_identifier, skip_ws};
use super::parallel_loader::without_version_comment;

/// The table a `CREATE TABLE `t` (...) ... ENGINE=InnoDB` statement creates, when its statistics
/// can be deferred: an InnoDB table without a `STATS_AUTO_RECALC` option of its own.
pub fn deferrable_table(sql: &str) -> Option<&str> {
    let s = without_version_comment(sql).as_bytes();
    let i = skip_ws(s, keyword(s, 0, b"CREATE")?);
    let mut i = skip_ws(s, keyword(s, i, b"TABLE")?);
    if let Some(j) = keyword(s, i, b"IF") {
        let j = skip_ws(s, keyword(s, skip_ws(s, j), b"NOT")?);
        i = skip_ws(s, keyword(s, j, b"EXISTS")?);
    }
    let end = quoted_identifier(s, i)?;
    if s.get(skip_ws(s, end)) != Some(&b'(') {
        return None;
    }
    let upper = sql.to_ascii_uppercase();
    let innodb = upper.contains("ENGINE=INNODB");
    let own_option = upper.contains("STATS_AUTO_RECALC");
    let offset = sql.len() - without_version_comment(sql).len();
    (innodb && !own_option).then(|| &sql[offset + i..offset + end])
}

/// True for the statements of a table's data section (session settings, `LOCK`/`UNLOCK
/// TABLES`, `ALTER TABLE .. DISABLE/ENABLE KEYS`, `INSERT`): the table's statistics stay
/// deferred through them and are computed before anything else runs.
pub fn within_table_data(sql: &str) -> bool {
    let s = without_version_comment(sql);
    let head: String = s.chars().take(16).collect::<String>().to_ascii_uppercase();
    let keys = s.trim_end_matches(" */").trim_end().to_ascii_uppercase();
    head.starts_with("SET ")
        || head.starts_with("INSERT ")
        || head.starts_with("LOCK TABLES")
        || head.starts_with("UNLOCK TABLES")
        || (head.starts_with("ALTER TABLE")
            && (keys.ends_with("DISABLE KEYS") || keys.ends_with("ENABLE KEYS")))
}

/// The statement that defers `table`'s statistics.
pub fn defer(table: &str) -> String {
    format!("ALTER TABLE {table} STATS_AUTO_RECALC=0")
}

/// The statements that give `table` its default back and compute its statistics.
pub fn restore(table: &str) -> [String; 2] {
    [
        format!("ALTER TABLE {table} STATS_AUTO_RECALC=DEFAULT"),
        format!("ANALYZE TABLE {table}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_innodb_tables_are_deferred() {
        assert_eq!(
            deferrable_table(
                "CREATE TABLE `t` (\n  `id` int\n) ENGINE=InnoDB DEFAULT CHARSET=latin1"
            ),
            Some("`t`")
        );
        assert_eq!(
            deferrable_table("CREATE TABLE IF NOT EXISTS `a``b` (`id` int) engine=innodb"),
            Some("`a``b`")
        );
        assert_eq!(
            deferrable_table("/*!40101 CREATE TABLE `t` (`id` int) ENGINE=InnoDB */"),
            Some("`t`")
        );
        for other in [
            "CREATE TABLE `t` (`id` int) ENGINE=MyISAM",
            "CREATE TABLE `t` (`id` int) ENGINE=InnoDB STATS_AUTO_RECALC=1",
            "CREATE TABLE `t` LIKE `u`",
            "CREATE TABLE t (`id` int) ENGINE=InnoDB",
            "CREATE TEMPORARY TABLE `t` (`id` int) ENGINE=InnoDB",
            "CREATE VIEW `t` AS SELECT 1",
        ] {
            assert_eq!(deferrable_table(other), None, "{other}");
        }
    }

    #[test]
    fn the_data_section_keeps_statistics_deferred() {
        for data in [
            "/*!40101 SET character_set_client = @saved_cs_client */",
            "LOCK TABLES `t` WRITE",
            "/*!40000 ALTER TABLE `t` DISABLE KEYS */",
            "INSERT INTO `t` VALUES (1)",
            "/*!40000 ALTER TABLE `t` ENABLE KEYS */",
            "UNLOCK TABLES",
        ] {
            assert!(within_table_data(data), "{data}");
        }
        for other in [
            "DROP TABLE IF EXISTS `u`",
            "CREATE TABLE `u` (`id` int)",
            "USE `d`",
            "ALTER TABLE `t` ADD INDEX (`a`)",
            "/*!50003 CREATE*/ /*!50003 TRIGGER x BEFORE INSERT ON t FOR EACH ROW SET @a=1 */",
        ] {
            assert!(!within_table_data(other), "{other}");
        }
    }
}
