/*
 * test_gov_pii.c - unit tests of the PII detectors (gov_pii.h): Luhn and mod-97 checks, e-mail,
 * phone, card and IBAN positives and negatives (plain numbers, dates, decimals, glued text, bad
 * checksums), exact spans with UTF-8 and invalid bytes around them, iteration over several
 * matches, and linear time on adversarial megabyte inputs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "gov/gov_pii.h"

/* The first match of k in s as a string ("" when none). */
static const char *first(gpii_kind_t k, const char *s)
{
    static char out[256];
    size_t a, b;
    out[0] = '\0';
    if (gpii_next(k, s, strlen(s), 0, &a, &b)) {
        assert_true(a < b && b <= strlen(s));
        snprintf(out, sizeof out, "%.*s", (int)(b - a), s + a);
    }
    return out;
}

static size_t count(gpii_kind_t k, const char *s, size_t len)
{
    size_t n = 0, from = 0, a, b;
    while (gpii_next(k, s, len, from, &a, &b)) {
        assert_true(a >= from && b > a && b <= len);
        n++;
        from = b;
    }
    return n;
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(gpii_name(GPII_EMAIL), "email");
    assert_string_equal(gpii_name(GPII_IBAN), "iban");
    assert_int_equal(gpii_kind_parse("card"), GPII_CARD);
    assert_int_equal(gpii_kind_parse("phone"), GPII_PHONE);
    assert_int_equal(gpii_kind_parse("ssn"), -1);
}

static void test_luhn(void **state)
{
    (void)state;
    assert_true(gpii_luhn_ok("4111111111111111", 16));
    assert_true(gpii_luhn_ok("79927398713", 11));
    assert_true(gpii_luhn_ok("378282246310005", 15));
    assert_false(gpii_luhn_ok("4111111111111112", 16));
    assert_false(gpii_luhn_ok("79927398710", 11));
    assert_false(gpii_luhn_ok("4111 1111", 9));
    assert_false(gpii_luhn_ok("", 0));
}

static void test_iban_checksum(void **state)
{
    (void)state;
    assert_true(gpii_iban_ok("DE89370400440532013000", 22));
    assert_true(gpii_iban_ok("GB82WEST12345698765432", 22));
    assert_true(gpii_iban_ok("GB29NWBK60161331926819", 22));
    assert_true(gpii_iban_ok("FR1420041010050500013M02606", 27));
    assert_true(gpii_iban_ok("NO9386011117947", 15));
    assert_true(gpii_iban_ok("BE68539007547034", 16));
    assert_true(gpii_iban_ok("gb82west12345698765432", 22)); /* case-insensitive */
    assert_false(gpii_iban_ok("DE89370400440532013001", 22));
    assert_false(gpii_iban_ok("GB82WEST12345698765433", 22));
    assert_false(gpii_iban_ok("DE8937040044", 12));                /* too short */
    assert_false(gpii_iban_ok("DE89 3704 0044 0532 0130 00", 27)); /* spaces: not compact */
}

static void test_email(void **state)
{
    (void)state;
    assert_string_equal(first(GPII_EMAIL, "mail jane.doe@example.com."), "jane.doe@example.com");
    assert_string_equal(first(GPII_EMAIL, "<x+tag@sub.example.co.uk>"), "x+tag@sub.example.co.uk");
    assert_string_equal(first(GPII_EMAIL, "(a_b-c%d@ex-ample.org)"), "a_b-c%d@ex-ample.org");
    assert_string_equal(first(GPII_EMAIL, "...lead@example.com"), "lead@example.com");
    assert_string_equal(first(GPII_EMAIL, "a@b"), "");
    assert_string_equal(first(GPII_EMAIL, "a@b.c"), "");
    assert_string_equal(first(GPII_EMAIL, "user@localhost"), "");
    assert_string_equal(first(GPII_EMAIL, "@example.com"), "");
    assert_string_equal(first(GPII_EMAIL, "foo@-bar.com"), "");
    assert_string_equal(first(GPII_EMAIL, "foo@bar.c0m"), "");
    assert_string_equal(first(GPII_EMAIL, "foo@bar.com_x"), "");
    assert_string_equal(first(GPII_EMAIL, "a @ b.com"), "");
    /* UTF-8 around the address */
    assert_string_equal(first(GPII_EMAIL, "日本語 jane@example.com です"), "jane@example.com");
    /* a 65-byte local part is not an address */
    char big[128];
    memset(big, 'a', 65);
    snprintf(big + 65, sizeof big - 65, "@example.com");
    assert_string_equal(first(GPII_EMAIL, big), "");
    memset(big, 'a', 64);
    snprintf(big + 64, sizeof big - 64, "@example.com");
    assert_string_equal(first(GPII_EMAIL, big), big);
    const char *two = "a@example.com, b@example.org and c@d";
    assert_int_equal(count(GPII_EMAIL, two, strlen(two)), 2);
}

static void test_phone(void **state)
{
    (void)state;
    static const char *const pos[] = {
        "+44 20 7946 0958",  "+1 (555) 123-4567", "(555) 123-4567",      "555-123-4567",
        "555.123.4567",      "020 7946 0958",     "06 12 34 56 78",      "+4915112345678",
        "0044 20 7946 0958", "1-800-555-1234",    "+44 (0)20 7946 0958", "030/1234567",
        "+33 6 12 34 56 78",
    };
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
        char s[128];
        snprintf(s, sizeof s, "call %s today", pos[i]);
        if (strcmp(first(GPII_PHONE, s), pos[i]) != 0)
            fail_msg("phone '%s' not found exactly (got '%s')", pos[i], first(GPII_PHONE, s));
    }
    static const char *const neg[] = {
        "12345678901",
        "order 2024-01-15 ok",
        "on 01.02.2024 10:30",
        "on 15/05/2024",
        "pi 3.14159265",
        "p 0.123456789",
        "version 1.2.3.4",
        "4111 1111 1111 1111",
        "x555-123-4567",
        "+12",
        "7 555-123-4567",
        "1+23456789012",
        "555-123-45678",
        "123-456-7890",
        "555 123-4567",
        "0123456789",
        "id 0000 1234 5678",
        "+1 555 123 4567 890 1234 5678",
        "12:30:45",
        "2024-01-15 10:30",
    };
    for (size_t i = 0; i < sizeof neg / sizeof neg[0]; i++)
        if (first(GPII_PHONE, neg[i])[0])
            fail_msg("'%s' taken for a phone number ('%s')", neg[i], first(GPII_PHONE, neg[i]));
    /* a digit group that ends a word does not glue */
    assert_string_equal(first(GPII_PHONE, "v2 555-123-4567"), "555-123-4567");
    assert_string_equal(first(GPII_PHONE, "Tel.:+49 30 1234567."), "+49 30 1234567");
}

static void test_card(void **state)
{
    (void)state;
    assert_string_equal(first(GPII_CARD, "card 4111 1111 1111 1111, exp"), "4111 1111 1111 1111");
    assert_string_equal(first(GPII_CARD, "4111-1111-1111-1111"), "4111-1111-1111-1111");
    assert_string_equal(first(GPII_CARD, "n=4111111111111111."), "4111111111111111");
    assert_string_equal(first(GPII_CARD, "amex 3782 822463 10005"), "3782 822463 10005");
    assert_string_equal(first(GPII_CARD, "mc 5555555555554444"), "5555555555554444");
    assert_string_equal(first(GPII_CARD, "«4111111111111111»"), "4111111111111111");
    assert_string_equal(first(GPII_CARD, "4111111111111112"), "");     /* Luhn */
    assert_string_equal(first(GPII_CARD, "1234567812345670"), "");     /* passes Luhn, prefix 1 */
    assert_string_equal(first(GPII_CARD, "41111111111111111111"), ""); /* 20 digits */
    assert_string_equal(first(GPII_CARD, "4111111111111111abc"), "");
    assert_string_equal(first(GPII_CARD, "x4111111111111111"), "");
    assert_string_equal(first(GPII_CARD, "3.4111111111111111"), "");
    assert_string_equal(first(GPII_CARD, "4111111111111111.25"), "");
    assert_string_equal(first(GPII_CARD, "4111  1111 1111 1111"), ""); /* double space */
    assert_string_equal(first(GPII_CARD, "411111111111"), "");         /* 12 digits */
    const char *two = "4111111111111111 and 5555 5555 5555 4444";
    assert_int_equal(count(GPII_CARD, two, strlen(two)), 2);
}

static void test_iban(void **state)
{
    (void)state;
    assert_string_equal(first(GPII_IBAN, "IBAN: DE89 3704 0044 0532 0130 00, thanks"),
                        "DE89 3704 0044 0532 0130 00");
    assert_string_equal(first(GPII_IBAN, "to DE89370400440532013000."), "DE89370400440532013000");
    assert_string_equal(first(GPII_IBAN, "GB82 WEST 1234 5698 7654 32"),
                        "GB82 WEST 1234 5698 7654 32");
    assert_string_equal(first(GPII_IBAN, "BE68 5390 0754 7034 NEXT word"), "BE68 5390 0754 7034");
    assert_string_equal(first(GPII_IBAN, "NO93 8601 1117 947"), "NO93 8601 1117 947");
    assert_string_equal(first(GPII_IBAN, "DE89 3704 0044 0532 0130 01"), "");
    assert_string_equal(first(GPII_IBAN, "DE89370400440532013001"), "");
    assert_string_equal(first(GPII_IBAN, "xDE89370400440532013000"), "");
    assert_string_equal(first(GPII_IBAN, "DE89370400440532013000x"), "");
    assert_string_equal(first(GPII_IBAN, "DE89 3704 0044"), "");
    assert_string_equal(first(GPII_IBAN, "ÜDE89 3704 0044 0532 0130 00ß"),
                        "DE89 3704 0044 0532 0130 00");
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    const char s[] = "\xff\xfe jane@example.com \xc3 4111111111111111 \x80\x80";
    size_t a, b, len = sizeof s - 1;
    assert_true(gpii_next(GPII_EMAIL, s, len, 0, &a, &b));
    assert_int_equal(a, 3);
    assert_int_equal(b, 19);
    assert_true(gpii_next(GPII_CARD, s, len, 0, &a, &b));
    assert_memory_equal(s + a, "4111111111111111", 16);
    /* NUL bytes are plain text */
    const char z[] = "a\0jane@example.com\0";
    assert_true(gpii_next(GPII_EMAIL, z, sizeof z - 1, 0, &a, &b));
    assert_int_equal(a, 2);
    assert_false(gpii_next(GPII_EMAIL, NULL, 0, 0, &a, &b));
    assert_false(gpii_next(GPII_EMAIL, z, sizeof z - 1, 100, &a, &b));
}

/* Adversarial inputs of 1 MB: every detector stays linear. */
static void test_linear(void **state)
{
    (void)state;
    static const char *const units[] = {"1 ",   "a@",    "aaaa@bbbb.", "DE00 ", "+1 ",
                                        "0 1-", "4111 ", "a.a-",       "((((1", "00 "};
    size_t n = 1u << 20;
    char *buf = malloc(n);
    assert_non_null(buf);
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        size_t ul = strlen(units[u]);
        for (size_t i = 0; i < n; i++)
            buf[i] = units[u][i % ul];
        clock_t t0 = clock();
        for (int k = 0; k < GPII_N; k++)
            (void)count((gpii_kind_t)k, buf, n);
        double sec = (double)(clock() - t0) / CLOCKS_PER_SEC;
        if (sec > 3.0)
            fail_msg("unit '%s': %.2f s for 4 detectors over 1 MB", units[u], sec);
    }
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),         cmocka_unit_test(test_luhn),
        cmocka_unit_test(test_iban_checksum), cmocka_unit_test(test_email),
        cmocka_unit_test(test_phone),         cmocka_unit_test(test_card),
        cmocka_unit_test(test_iban),          cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_linear),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
