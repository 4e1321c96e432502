//! The server and psql without Kubernetes: a data directory in a [`Files`], a
//! session, psql's front end. Expected outputs are psql's, captured from a real
//! psql/PostgreSQL where noted.

use super::engine::{self, Session};
use super::psql;
use super::*;
use crate::voldata::{Files, VolumeData};

/// 2024-05-01 12:00:00.123456 UTC
const T0: i64 = 1_714_564_800_123_456;

fn cluster(files: &mut Files) {
    engine::initdb(files, "", "16", "openalex", "secret", "openalex");
}

/// Runs psql with `args` on a fresh-or-existing data directory (clock fixed at T0).
fn psql_on(files: &mut Files, args: &[&str], stdin: Option<&str>) -> ExecOutput {
    if engine::read_cluster(files, "").is_none() {
        cluster(files);
    }
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let o = match psql::parse_args(&args, &|_| None, "16.4").unwrap() {
        psql::Parsed::Run(o) => o,
        psql::Parsed::Print(p) => return p,
    };
    let mut s =
        Session::new(files, "", "openalex", "openalex", "PostgreSQL 16.4").with_clock(|| T0);
    psql::run(&o, &mut s, stdin.map(str::as_bytes)).out
}

fn out(o: &ExecOutput) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &ExecOutput) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn markers_create_insert_and_max() {
    let mut f = Files::default();
    let r = psql_on(&mut f, &["-c", "CREATE TABLE IF NOT EXISTS rpo_markers (id bigserial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT now(), note text)"], None);
    assert_eq!(
        (out(&r), err(&r), r.exit_code),
        ("CREATE TABLE\n".into(), String::new(), 0)
    );
    let r = psql_on(
        &mut f,
        &[
            "-c",
            "CREATE TABLE IF NOT EXISTS rpo_markers (id bigserial PRIMARY KEY)",
        ],
        None,
    );
    assert_eq!(out(&r), "CREATE TABLE\n");
    assert_eq!(
        err(&r),
        "NOTICE:  relation \"rpo_markers\" already exists, skipping\n"
    );
    let r = psql_on(&mut f, &["-c", "INSERT INTO rpo_markers (ts, note) VALUES ('2024-05-01 11:59:58+00', 'm1'), ('2024-05-01T11:59:59.5Z', 'm2')"], None);
    assert_eq!(out(&r), "INSERT 0 2\n");
    let r = psql_on(
        &mut f,
        &[
            "-qAt",
            "-c",
            "INSERT INTO rpo_markers (note) VALUES ('m3') RETURNING id",
        ],
        None,
    );
    assert_eq!(out(&r), "3\n");
    let r = psql_on(
        &mut f,
        &["-At", "-c", "SELECT max(ts) FROM rpo_markers"],
        None,
    );
    assert_eq!(out(&r), "2024-05-01 12:00:00.123456+00\n");
    let r = psql_on(
        &mut f,
        &[
            "-At",
            "-c",
            "SELECT extract(epoch FROM max(ts)) FROM rpo_markers WHERE note <> 'm3'",
        ],
        None,
    );
    assert_eq!(out(&r), "1714564799.500000\n");
    let r = psql_on(
        &mut f,
        &["-c", "SELECT count(*), max(id), min(ts) FROM rpo_markers"],
        None,
    );
    assert_eq!(
        out(&r),
        " count | max |          min           \n-------+-----+------------------------\n     3 |   3 | 2024-05-01 11:59:58+00\n(1 row)\n\n"
    );
    // The table is a file of the data directory.
    assert!(f
        .paths()
        .contains(&"base/openalex/rpo_markers.json".to_string()));
}

#[test]
fn output_formats_match_psql() {
    let mut f = Files::default();
    // Captured from psql 15/16 against a real server (same statements, same data).
    psql_on(&mut f, &["-c", "create table markers (id bigserial primary key, ts timestamptz not null default now(), note text, v double precision, n integer, j jsonb)"], None);
    let r = psql_on(
        &mut f,
        &["-c", "insert into markers (note, v, n, j) values ('hello', 1.5, 42, '{\"b\": [1,2], \"aa\": {\"x\": null}, \"c\": \"s\"}'), (NULL, 0.1, -3, NULL) returning id"],
        None,
    );
    assert_eq!(out(&r), " id \n----\n  1\n  2\n(2 rows)\n\nINSERT 0 2\n");
    let r = psql_on(&mut f, &["-c", "select * from markers"], None);
    assert_eq!(
        out(&r),
        concat!(
            " id |              ts               | note  |  v  | n  |                     j                      \n",
            "----+-------------------------------+-------+-----+----+--------------------------------------------\n",
            "  1 | 2024-05-01 12:00:00.123456+00 | hello | 1.5 | 42 | {\"b\": [1, 2], \"c\": \"s\", \"aa\": {\"x\": null}}\n",
            "  2 | 2024-05-01 12:00:00.123456+00 |       | 0.1 | -3 | \n",
            "(2 rows)\n\n"
        )
    );
    assert_eq!(
        out(&psql_on(
            &mut f,
            &["-t", "-c", "select count(*) from markers"],
            None
        )),
        "     2\n\n"
    );
    assert_eq!(
        out(&psql_on(
            &mut f,
            &["-A", "-c", "select id, note from markers"],
            None
        )),
        "id|note\n1|hello\n2|\n(2 rows)\n"
    );
    assert_eq!(
        out(&psql_on(
            &mut f,
            &["-At", "-c", "select id, note from markers"],
            None
        )),
        "1|hello\n2|\n"
    );
    assert_eq!(
        out(&psql_on(&mut f, &["-c", "select 1 where false"], None)),
        " ?column? \n----------\n(0 rows)\n\n"
    );
    assert_eq!(
        out(&psql_on(
            &mut f,
            &["-t", "-c", "select id, note from markers"],
            None
        )),
        "  1 | hello\n  2 | \n\n"
    );
    assert_eq!(
        out(&psql_on(
            &mut f,
            &["-t", "-c", "select id from markers where false"],
            None
        )),
        "\n"
    );
    assert_eq!(
        out(&psql_on(
            &mut f,
            &["-A", "-c", "select id from markers where false"],
            None
        )),
        "id\n(0 rows)\n"
    );
    assert_eq!(
        out(&psql_on(
            &mut f,
            &[
                "-A",
                "-c",
                "insert into markers (note) values ('r') returning id, note"
            ],
            None
        )),
        "id|note\n3|r\n(1 row)\nINSERT 0 1\n"
    );
    assert_eq!(
        out(&psql_on(
            &mut f,
            &[
                "-At",
                "-F",
                ",",
                "-c",
                "select id, note, n from markers order by id desc limit 2"
            ],
            None
        )),
        "3,r,\n2,,-3\n"
    );
    assert_eq!(
        out(&psql_on(&mut f, &["-c", "select 1"], None)),
        " ?column? \n----------\n        1\n(1 row)\n\n"
    );
    assert_eq!(out(&psql_on(&mut f, &["-c", "select now()"], None)), "              now              \n-------------------------------\n 2024-05-01 12:00:00.123456+00\n(1 row)\n\n");
    assert_eq!(
        out(&psql_on(
            &mut f,
            &[
                "-c",
                "insert into markers (note) values ('a'); select count(*) from markers"
            ],
            None
        )),
        "INSERT 0 1\n count \n-------\n     4\n(1 row)\n\n"
    );
    assert_eq!(out(&psql_on(&mut f, &["-c", "select 1; select 2"], None)), " ?column? \n----------\n        1\n(1 row)\n\n ?column? \n----------\n        2\n(1 row)\n\n");
    assert_eq!(
        out(&psql_on(
            &mut f,
            &["-c", "delete from markers where id > 2"],
            None
        )),
        "DELETE 2\n"
    );
    assert_eq!(
        out(&psql_on(&mut f, &["-c", "update markers set n = 1"], None)),
        "UPDATE 2\n"
    );
    assert_eq!(
        out(&psql_on(&mut f, &["-c", "truncate markers"], None)),
        "TRUNCATE TABLE\n"
    );
    assert_eq!(
        out(&psql_on(
            &mut f,
            &["-q", "-c", "insert into markers (note) values ('q')"],
            None
        )),
        ""
    );
    assert_eq!(
        out(&psql_on(
            &mut f,
            &[
                "-c",
                "begin; insert into markers (note) values ('y'); commit"
            ],
            None
        )),
        "BEGIN\nINSERT 0 1\nCOMMIT\n"
    );
    assert_eq!(
        out(&psql_on(&mut f, &["-c", "select true, 1.50, 3::float8, 1e20::float8, '2024-01-01T10:00:00Z'::timestamptz, pg_is_in_recovery(), current_database(), current_user"], None)),
        concat!(
            " bool | ?column? | float8 | float8 |      timestamptz       | pg_is_in_recovery | current_database | current_user \n",
            "------+----------+--------+--------+------------------------+-------------------+------------------+--------------\n",
            " t    |     1.50 |      3 |  1e+20 | 2024-01-01 10:00:00+00 | f                 | openalex         | openalex\n",
            "(1 row)\n\n"
        )
    );
    // Captured from psql as well: footer off, NULL display, record separator, CSV, `-f -`.
    assert_eq!(
        out(&psql_on(
            &mut f,
            &["-P", "footer=off", "-c", "select 1 as a"],
            None
        )),
        " a \n---\n 1\n\n"
    );
    assert_eq!(
        out(&psql_on(
            &mut f,
            &["-P", "null=NULL", "-At", "-c", "select null"],
            None
        )),
        "NULL\n"
    );
    assert_eq!(
        out(&psql_on(
            &mut f,
            &["-A", "-R", ";", "-c", "select id from markers order by id"],
            None
        )),
        "id;5;6;(2 rows)\n"
    );
    assert_eq!(
        out(&psql_on(
            &mut f,
            &[
                "--csv",
                "-c",
                "select 1 as id, 'a,\"b\"' as note, NULL as n, '' as e"
            ],
            None
        )),
        "id,note,n,e\n1,\"a,\"\"b\"\"\",,\n"
    );
    assert_eq!(
        out(&psql_on(&mut f, &["-At", "-f", "-"], Some("select 1;"))),
        "1\n"
    );
    assert_eq!(
        out(&psql_on(&mut f, &["-c", "drop table markers"], None)),
        "DROP TABLE\n"
    );
}

#[test]
fn errors_and_exit_codes_match_psql() {
    let mut f = Files::default();
    let r = psql_on(&mut f, &["-c", "select * from nope"], None);
    assert_eq!((out(&r), r.exit_code), (String::new(), 1));
    assert_eq!(err(&r), "ERROR:  relation \"nope\" does not exist\nLINE 1: select * from nope\n                      ^\n");
    let r = psql_on(&mut f, &["-v", "ON_ERROR_STOP=1", "-c", "selec 1"], None);
    assert_eq!(
        (err(&r), r.exit_code),
        (
            "ERROR:  syntax error at or near \"selec\"\nLINE 1: selec 1\n        ^\n".into(),
            1
        )
    );
    let r = psql_on(&mut f, &["-c", "select 1 from"], None);
    assert_eq!(
        err(&r),
        "ERROR:  syntax error at end of input\nLINE 1: select 1 from\n                     ^\n"
    );
    // A script goes on after an error and exits 0; with ON_ERROR_STOP it stops with 3.
    let script = "select 1;\nselect * from nope;\nselect 2;\n";
    let r = psql_on(&mut f, &["-At"], Some(script));
    assert_eq!((out(&r), r.exit_code), ("1\n2\n".into(), 0));
    assert_eq!(err(&r), "ERROR:  relation \"nope\" does not exist\nLINE 1: select * from nope;\n                      ^\n");
    let r = psql_on(&mut f, &["-At", "-v", "ON_ERROR_STOP=1"], Some(script));
    assert_eq!((out(&r), r.exit_code), ("1\n".into(), 3));

    psql_on(&mut f, &["-c", "create table t3 (id serial primary key, name text not null, score integer unique, ts timestamptz default now())"], None);
    let r = psql_on(&mut f, &["-c", "insert into t3 (name) values (NULL)"], None);
    assert_eq!(
        err(&r),
        "ERROR:  null value in column \"name\" of relation \"t3\" violates not-null constraint\nDETAIL:  Failing row contains (1, null, null, 2024-05-01 12:00:00.123456+00).\n"
    );
    let r = psql_on(
        &mut f,
        &[
            "-c",
            "insert into t3 (name, score) values ('a', 1), ('b', 1)",
        ],
        None,
    );
    assert_eq!(err(&r), "ERROR:  duplicate key value violates unique constraint \"t3_score_key\"\nDETAIL:  Key (score)=(1) already exists.\n");
    let r = psql_on(&mut f, &["-c", "select * from t3 where name = 5"], None);
    assert_eq!(
        err(&r),
        "ERROR:  operator does not exist: text = integer\nLINE 1: select * from t3 where name = 5\n                                    ^\nHINT:  No operator matches the given name and argument types. You might need to add explicit type casts.\n"
    );
    let r = psql_on(&mut f, &["-c", "select name, count(*) from t3"], None);
    assert_eq!(err(&r), "ERROR:  column \"t3.name\" must appear in the GROUP BY clause or be used in an aggregate function\nLINE 1: select name, count(*) from t3\n               ^\n");
    let r = psql_on(
        &mut f,
        &["-c", "select count(name), sum(score), sum(id) from t3"],
        None,
    );
    assert_eq!(
        out(&r),
        " count | sum | sum \n-------+-----+-----\n     0 |     |    \n(1 row)\n\n"
    );
    let r = psql_on(
        &mut f,
        &["-c", "select * from t3 where id = 'thisisnotanumber'"],
        None,
    );
    assert_eq!(err(&r), "ERROR:  invalid input syntax for type integer: \"thisisnotanumber\"\nLINE 1: select * from t3 where id = 'thisisnotanumber'\n                                    ^\n");
    let r = psql_on(
        &mut f,
        &["-c", "insert into t3 (name, score) values ('a')"],
        None,
    );
    assert_eq!(err(&r), "ERROR:  INSERT has more target columns than expressions\nLINE 1: insert into t3 (name, score) values ('a')\n                              ^\n");
    let r = psql_on(
        &mut f,
        &["-c", "insert into t3 (name) values ('a', 1)"],
        None,
    );
    assert_eq!(err(&r), "ERROR:  INSERT has more expressions than target columns\nLINE 1: insert into t3 (name) values ('a', 1)\n                                           ^\n");
    let r = psql_on(&mut f, &["-c", "insert into t3 (zz) values (1)"], None);
    assert_eq!(err(&r), "ERROR:  column \"zz\" of relation \"t3\" does not exist\nLINE 1: insert into t3 (zz) values (1)\n                        ^\n");
    let r = psql_on(&mut f, &["-c", "select nocol from t3"], None);
    assert_eq!(
        err(&r),
        "ERROR:  column \"nocol\" does not exist\nLINE 1: select nocol from t3\n               ^\n"
    );
    let r = psql_on(&mut f, &["-c", "create table t2 (a text, b frob)"], None);
    assert_eq!(err(&r), "ERROR:  type \"frob\" does not exist\nLINE 1: create table t2 (a text, b frob)\n                                   ^\n");
    let r = psql_on(&mut f, &["-c", "create table t3 (id int)"], None);
    assert_eq!(err(&r), "ERROR:  relation \"t3\" already exists\n");
    let r = psql_on(&mut f, &["-c", "drop table if exists zzz"], None);
    assert_eq!(
        (out(&r), err(&r)),
        (
            "DROP TABLE\n".into(),
            "NOTICE:  table \"zzz\" does not exist, skipping\n".into()
        )
    );
    let r = psql_on(&mut f, &["-c", "drop table zzz"], None);
    assert_eq!(
        (err(&r), r.exit_code),
        ("ERROR:  table \"zzz\" does not exist\n".into(), 1)
    );
    let r = psql_on(&mut f, &["-c", "frobnicate the database"], None);
    assert_eq!((err(&r), r.exit_code), ("ERROR:  syntax error at or near \"frobnicate\"\nLINE 1: frobnicate the database\n        ^\n".into(), 1));
}

#[test]
fn a_failed_command_string_rolls_back_entirely() {
    let mut f = Files::default();
    psql_on(&mut f, &["-c", "create table m (id int primary key)"], None);
    let r = psql_on(
        &mut f,
        &["-c", "insert into m values (1); insert into m values (1)"],
        None,
    );
    assert_eq!(out(&r), "INSERT 0 1\n");
    assert_eq!(r.exit_code, 1);
    assert_eq!(
        out(&psql_on(
            &mut f,
            &["-At", "-c", "select count(*) from m"],
            None
        )),
        "0\n"
    );
    // Each script statement is its own transaction...
    psql_on(
        &mut f,
        &["-q"],
        Some("insert into m values (1);\ninsert into m values (1);\n"),
    );
    assert_eq!(
        out(&psql_on(
            &mut f,
            &["-At", "-c", "select count(*) from m"],
            None
        )),
        "1\n"
    );
    // ...unless the script opens a block: an error aborts it until ROLLBACK.
    let r = psql_on(&mut f, &["-At"], Some("begin;\ninsert into m values (2);\ninsert into m values (1);\ninsert into m values (3);\ncommit;\n"));
    assert_eq!(out(&r), "BEGIN\nINSERT 0 1\nROLLBACK\n");
    assert!(err(&r).contains(
        "ERROR:  current transaction is aborted, commands ignored until end of transaction block\n"
    ));
    assert_eq!(
        out(&psql_on(
            &mut f,
            &["-At", "-c", "select id from m order by id"],
            None
        )),
        "1\n"
    );
    // A block left open when psql exits is rolled back.
    psql_on(&mut f, &["-q"], Some("begin; insert into m values (9);"));
    assert_eq!(
        out(&psql_on(
            &mut f,
            &["-At", "-c", "select count(*) from m"],
            None
        )),
        "1\n"
    );
}

#[test]
fn scripts_split_statements_and_interpolate_variables() {
    let mut f = Files::default();
    let script = "-- markers\nCREATE TABLE m (id serial, note text);\nINSERT INTO m (note)\n  VALUES (:'note'), ('semi;colon');\n\\echo done\nSELECT note FROM m WHERE id = :id ORDER BY 1;\n\\q\nSELECT 'not reached';\n";
    let r = psql_on(
        &mut f,
        &["-qAt", "-v", "note=it's", "-v", "id=1"],
        Some(script),
    );
    assert_eq!(out(&r), "done\nit's\n");
    assert_eq!(r.exit_code, 0);
    let r = psql_on(
        &mut f,
        &["-At", "-c", "select note from m order by id"],
        None,
    );
    assert_eq!(out(&r), "it's\nsemi;colon\n");
    let r = psql_on(&mut f, &["-c", "\\frob"], None);
    assert_eq!(
        (err(&r), r.exit_code),
        ("invalid command \\frob\n".into(), 1)
    );
    let r = psql_on(&mut f, &["-c", "\\dt"], None);
    assert_eq!(
        (err(&r), r.exit_code),
        ("psql (stormdrill twin): \\dt is not simulated\n".into(), 1)
    );
}

#[test]
fn where_order_limit_and_expressions() {
    let mut f = Files::default();
    psql_on(
        &mut f,
        &[
            "-q",
            "-c",
            "create table w (id text primary key, year integer, cites integer, t timestamptz)",
        ],
        None,
    );
    psql_on(
        &mut f,
        &["-q", "-c", "insert into w values ('W1', 2019, 10, '2024-01-01'), ('W2', 2020, NULL, '2024-01-02'), ('W3', 2021, 30, '2024-01-03'), ('W4', 2020, 5, NULL)"],
        None,
    );
    let q = |sql: &str| out(&psql_on(&mut f.clone_files(), &["-At", "-c", sql], None));
    assert_eq!(
        q("select id from w where year = 2020 and cites > 1"),
        "W4\n"
    );
    assert_eq!(
        q("select id from w where year >= 2020 or cites is null order by id desc"),
        "W4\nW3\nW2\n"
    );
    assert_eq!(
        q("select id from w order by cites desc limit 2"),
        "W2\nW3\n"
    );
    assert_eq!(
        q("select id from w order by cites nulls first limit 1"),
        "W2\n"
    );
    assert_eq!(
        q("select id, cites * 2 + 1 from w where id in ('W1', 'W3') order by 2"),
        "W1|21\nW3|61\n"
    );
    assert_eq!(
        q("select id from w where t > '2024-01-01 12:00' order by t limit 1 offset 1"),
        "W3\n"
    );
    assert_eq!(
        q("select count(*) from w where t is not null and not (year = 2019)"),
        "2\n"
    );
    assert_eq!(
        q("select max(t) - min(t), extract(epoch from interval '1 hour') from w"),
        "2 days|3600.000000\n"
    );
    assert_eq!(q("select max(t) - max(t) - interval '90 minutes', extract(epoch from max(t) - min(t)) from w"), "-01:30:00|172800.000000\n");
    assert_eq!(
        q("select lower(id) || '-' || year from w where id = 'W1'"),
        "w1-2019\n"
    );
    assert_eq!(
        q("select sum(cites), min(year), max(id) from w"),
        "45|2019|W4\n"
    );
    assert_eq!(
        q("select to_timestamp(0), now() - interval '1 day' > '2024-04-30'"),
        "1970-01-01 00:00:00+00|t\n"
    );
}

trait CloneFiles {
    fn clone_files(&self) -> Files;
}

impl CloneFiles for Files {
    fn clone_files(&self) -> Files {
        let mut f = Files::default();
        for p in self.paths() {
            f.put(&p, self.get(&p).unwrap_or_default().to_vec());
        }
        f
    }
}

#[test]
fn the_sample_loads_into_works_and_authors() {
    let mut f = Files::default();
    cluster(&mut f);
    let mut s = Session::new(&mut f, "", "openalex", "openalex", "PostgreSQL 16.4");
    assert_eq!(load_sample(&mut s), 80);
    drop(s);
    assert_eq!(
        out(&psql_on(
            &mut f,
            &[
                "-At",
                "-c",
                "select count(*) from works; select count(*) from authors"
            ],
            None
        )),
        "50\n30\n"
    );
    let r = psql_on(&mut f, &["-At", "-c", "select data->'id' from works"], None);
    assert_eq!(r.exit_code, 1, "-> is not in the subset");
    let r = psql_on(
        &mut f,
        &[
            "-At",
            "-c",
            "select id, publication_year from works where id = 'W2741809807'",
        ],
        None,
    );
    let (works, authors) = sample();
    assert_eq!(
        out(&r),
        format!("W2741809807|{}\n", works[0]["publication_year"])
    );
    let first_author =
        short_id(works[0]["authorships"][0]["author"]["id"].as_str().unwrap()).to_string();
    assert_eq!(first_author, "A5023888391");
    assert!(authors
        .iter()
        .any(|a| a["id"] == format!("https://openalex.org/{first_author}")));
    // Every authorship points at a sample author.
    for w in &works {
        for a in w["authorships"].as_array().unwrap() {
            assert!(
                authors.iter().any(|x| x["id"] == a["author"]["id"]),
                "{}",
                a["author"]["id"]
            );
        }
    }
}

#[test]
fn sessions_on_a_shared_volume_serialize() {
    let d = std::sync::Arc::new(VolumeData::default());
    d.update("pv", cluster);
    d.update("pv", |f| {
        psql_on(
            f,
            &[
                "-q",
                "-c",
                "create table m (id bigserial primary key, ts timestamptz default now())",
            ],
            None,
        )
    });
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let d = d.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let r = d.update("pv", |f| {
                        psql_on(f, &["-q", "-c", "insert into m default values"], None)
                    });
                    assert_eq!(r.exit_code, 0, "{}", err(&r));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let r = d.update("pv", |f| {
        psql_on(f, &["-At", "-c", "select count(*), max(id) from m"], None)
    });
    assert_eq!(out(&r), "100|100\n");
}

#[test]
fn image_versions() {
    assert_eq!(image_version("postgres:16.4"), "16.4");
    assert_eq!(
        image_version("docker.io/library/postgres:15-alpine"),
        "15.8"
    );
    assert_eq!(image_version("postgres"), DEFAULT_VERSION);
    assert_eq!(image_version("postgres:16.4-bookworm@sha256:abc"), "16.4");
    assert!(is_postgres_image("docker.io/library/postgres:16.4"));
    assert!(!is_postgres_image(
        "quay.io/prometheuscommunity/postgres-exporter:v0.15.0"
    ));
}
