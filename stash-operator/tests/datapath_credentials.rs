//! The database password reaches `mysql` and `mysqldump` only through a private option file:
//! a password full of characters that option files and shells treat specially still works,
//! and it appears in no argument and no environment variable.

use std::process::Command;
use std::time::Duration;

use stash_operator::datapath::mysql_client::{
    dump_commands, wait_for_database, ClientOptionFile, DbTarget,
};
use stash_testkit::providers::MysqlServer;

const ODD_PASSWORD: &str = "p\"a#s s\\w'x;=[client]\tend";

fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

#[test]
fn an_odd_password_works_through_the_option_file() {
    let server = MysqlServer::start().expect("mariadb");
    server
        .execute(&format!(
            "CREATE USER 'odd'@'%' IDENTIFIED BY {pw}; CREATE USER 'odd'@'localhost' IDENTIFIED BY {pw}; \
             GRANT ALL ON *.* TO 'odd'@'%'; GRANT ALL ON *.* TO 'odd'@'localhost'; \
             CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY); INSERT INTO shop.t VALUES (1);",
            pw = sql_string(ODD_PASSWORD)
        ))
        .expect("create user");
    let target = DbTarget {
        host: server.host().to_owned(),
        port: server.port(),
        user: "odd".into(),
        password: ODD_PASSWORD.into(),
        ssl_ca: None,
    };
    wait_for_database(
        "mysql",
        &target,
        &[],
        Duration::from_secs(10),
        Duration::from_millis(200),
    )
    .expect("the mysql client logs in with the odd password");

    let options = ClientOptionFile::write(&target).expect("option file");
    let dumps = dump_commands(
        "mysqldump",
        &target,
        &options,
        &["--databases".to_owned(), "shop".to_owned()],
        &[],
    );
    for dump in &dumps {
        assert!(dump.env.is_empty());
        assert!(dump.args.iter().all(|a| !a.contains(ODD_PASSWORD)));
        let out = Command::new(&dump.program)
            .args(&dump.args)
            .env_remove("MYSQL_PWD")
            .output()
            .expect("mysqldump");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("-- Dump completed"), "{stdout}");
    }

    // A wrong password is refused: the file is really what authenticates.
    let wrong = DbTarget {
        password: "not-it".into(),
        ..target
    };
    assert!(wait_for_database(
        "mysql",
        &wrong,
        &[],
        Duration::from_millis(300),
        Duration::from_millis(100),
    )
    .is_err());
}
