// SPDX-License-Identifier: MIT
/*
 * nori-demo's SQLite database: 200k orders and 500 products, created in
 * one transaction on first start (deterministic data: the same database on
 * every machine), and the statements the handlers reuse. One connection per
 * process: with --workers the parent creates the file before it forks and
 * closes it, and each worker opens its own.
 */
#include "demo.h"

#include <stdint.h>
#include <stdio.h>

static int exec(const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(demo.db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "nori-demo: sqlite: %s\n", err ? err : "error");
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

/* Creates and fills the tables on first start, in one transaction so that
 * startup takes well under a second. */
int demo_db_open(const char *path)
{
    if (sqlite3_open_v2(path, &demo.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        fprintf(stderr, "nori-demo: cannot open %s: %s\n", path, sqlite3_errmsg(demo.db));
        return -1;
    }
    /* With --workers several processes write (POST /products, the test
     * routes): a writer waits for another's lock instead of failing. */
    sqlite3_busy_timeout(demo.db, 5000);
    sqlite3_stmt *st;
    int have = 0;
    if (sqlite3_prepare_v2(demo.db,
                           "SELECT count(*) FROM sqlite_master WHERE name = 'orders'", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        have = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (!have) {
        if (exec("BEGIN;"
                 "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                 " price_cents INTEGER NOT NULL);"
                 "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER NOT NULL,"
                 " product INTEGER NOT NULL, status TEXT NOT NULL,"
                 " amount_cents INTEGER NOT NULL, created INTEGER NOT NULL);") < 0)
            return -1;
        static const char *statuses[] = {"new", "paid", "shipped", "delivered", "refunded"};
        uint64_t x = 42; /* deterministic data: same database on every machine */
        sqlite3_stmt *ins;
        sqlite3_prepare_v2(demo.db, "INSERT INTO products VALUES (?, ?, ?)", -1, &ins, NULL);
        for (int i = 1; i <= N_PRODUCTS; i++) {
            char name[32];
            snprintf(name, sizeof name, "product %d", i);
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            sqlite3_bind_int(ins, 1, i);
            sqlite3_bind_text(ins, 2, name, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(ins, 3, (int)(100 + (x >> 33) % 20000));
            sqlite3_step(ins);
            sqlite3_reset(ins);
        }
        sqlite3_finalize(ins);
        sqlite3_prepare_v2(demo.db, "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", -1, &ins,
                           NULL);
        for (int i = 1; i <= N_ORDERS; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            uint64_t r = x >> 16;
            sqlite3_bind_int(ins, 1, i);
            sqlite3_bind_int(ins, 2, (int)(r % 20000));
            sqlite3_bind_int(ins, 3, (int)(1 + (r >> 16) % N_PRODUCTS));
            sqlite3_bind_text(ins, 4, statuses[(r >> 28) % 5], -1, SQLITE_STATIC);
            sqlite3_bind_int(ins, 5, (int)(100 + (r >> 32) % 50000));
            sqlite3_bind_int64(ins, 6, 1700000000 + i * 60);
            if (sqlite3_step(ins) != SQLITE_DONE) {
                fprintf(stderr, "nori-demo: insert: %s\n", sqlite3_errmsg(demo.db));
                sqlite3_finalize(ins);
                return -1;
            }
            sqlite3_reset(ins);
        }
        sqlite3_finalize(ins);
        /* A covering index for the dashboard's GROUP BY: the aggregate then
         * reads the index only (about 20 ms for 200k rows instead of 80). */
        if (exec("CREATE INDEX orders_status ON orders(status, amount_cents);"
                 "COMMIT;") < 0)
            return -1;
    }
    if (sqlite3_prepare_v2(demo.db,
                           "SELECT status, count(*), sum(amount_cents), avg(amount_cents)"
                           " FROM orders GROUP BY status"
                           " ORDER BY status",
                           -1, &demo.dashboard, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(demo.db,
                           "SELECT id, name, price_cents FROM products ORDER BY id"
                           " LIMIT ? OFFSET ?",
                           -1, &demo.products, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(demo.db, "SELECT price_cents FROM products WHERE id = ?", -1,
                           &demo.stock, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(demo.db,
                           "UPDATE products SET price_cents = price_cents WHERE id = 1", -1,
                           &demo.touch, NULL) != SQLITE_OK) {
        fprintf(stderr, "nori-demo: prepare: %s\n", sqlite3_errmsg(demo.db));
        return -1;
    }
    /* The test routes (--test-routes): per key, how often /slow's handler
     * ran and in which process last, and a version that POST /slow moves.
     * In the database so that every worker process sees the same counts. */
    if (exec("CREATE TABLE IF NOT EXISTS slow (key TEXT PRIMARY KEY,"
             " runs INTEGER NOT NULL DEFAULT 0, version INTEGER NOT NULL DEFAULT 0,"
             " pid INTEGER NOT NULL DEFAULT 0)") < 0 ||
        sqlite3_prepare_v2(demo.db,
                           "INSERT INTO slow (key, runs, pid) VALUES (?1, 1, ?2)"
                           " ON CONFLICT(key) DO UPDATE SET runs = runs + 1, pid = ?2"
                           " RETURNING runs, version",
                           -1, &demo.slow_run, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(demo.db, "SELECT runs, version, pid FROM slow WHERE key = ?", -1,
                           &demo.slow_get, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(demo.db,
                           "INSERT INTO slow (key, version) VALUES (?, 1)"
                           " ON CONFLICT(key) DO UPDATE SET version = version + 1",
                           -1, &demo.slow_bump, NULL) != SQLITE_OK) {
        fprintf(stderr, "nori-demo: prepare: %s\n", sqlite3_errmsg(demo.db));
        return -1;
    }
    return 0;
}

void demo_db_close(void)
{
    sqlite3_finalize(demo.dashboard);
    sqlite3_finalize(demo.products);
    sqlite3_finalize(demo.stock);
    sqlite3_finalize(demo.touch);
    sqlite3_finalize(demo.slow_run);
    sqlite3_finalize(demo.slow_get);
    sqlite3_finalize(demo.slow_bump);
    sqlite3_close(demo.db);
    demo.db = NULL;
    demo.dashboard = demo.products = demo.stock = demo.touch = NULL;
    demo.slow_run = demo.slow_get = demo.slow_bump = NULL;
}
