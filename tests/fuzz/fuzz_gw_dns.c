/*
 * fuzz_gw_dns.c - libFuzzer harness for gwdns_msg_parse, the DNS response parser discovery runs
 * over answers from the network: any input gives ST_OK or ST_PROTO, the record counts stay within
 * their caps, every name is NUL-terminated, lower case, without a trailing dot, every address is
 * numeric (inet_pton accepts it back), and parsing is deterministic. abort()s on a violation.
 * Also built with replay_main.c for ctest (tests/fuzz/corpus/gw_dns).
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/status.h"
#include "gateway/gw_dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void check_name(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    CHECK(n < cap);
    CHECK(n == 0 || s[n - 1] != '.');
    for (size_t i = 0; i < n; i++)
        CHECK(!(s[i] >= 'A' && s[i] <= 'Z'));
}

static void check_host(const char *h, size_t cap)
{
    CHECK(strnlen(h, cap) < cap);
    unsigned char buf[16];
    CHECK(inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gwdns_msg_t m, m2;
    int rc = gwdns_msg_parse(data, size, &m);
    CHECK(rc == ST_OK || rc == ST_PROTO);
    if (rc != ST_OK)
        return 0;
    CHECK(m.rcode >= 0 && m.rcode <= 15);
    CHECK(m.n_srv <= GWDNS_MSG_MAX_SRV && m.n_addr <= GWDNS_MSG_MAX_ADDR);
    for (size_t i = 0; i < m.n_srv; i++) {
        check_name(m.srv[i].target, sizeof m.srv[i].target);
        CHECK(m.srv[i].port >= 0 && m.srv[i].port <= 65535);
    }
    for (size_t i = 0; i < m.n_addr; i++) {
        check_name(m.addr[i].owner, sizeof m.addr[i].owner);
        check_host(m.addr[i].host, sizeof m.addr[i].host);
    }
    CHECK(gwdns_msg_parse(data, size, &m2) == ST_OK);
    CHECK(m2.n_srv == m.n_srv && m2.n_addr == m.n_addr && m2.rcode == m.rcode);
    for (size_t i = 0; i < m.n_addr; i++)
        CHECK(strcmp(m.addr[i].host, m2.addr[i].host) == 0);
    return 0;
}
