/*
 * gov_pii.h - hand-written linear scanners for personal data in prompt and output text: e-mail
 * addresses, phone numbers, payment card numbers (Luhn) and IBANs (mod-97). Used by gov_guard.c;
 * exported so the detectors can be tested (and reused) on their own.
 *
 * Each detector is an iterator: gpii_next(kind, text, len, from, ...) returns the first match that
 * starts at or after `from` and does not reach back before it. Calling it again from the end of the
 * previous match walks all matches in O(len) total (every candidate does bounded work, at most
 * ~320 bytes for an e-mail and ~64 for the others). The text is any bytes (not necessarily valid
 * UTF-8 or NUL-terminated); only ASCII bytes are ever part of a match, so a match never splits a
 * UTF-8 sequence. What each detector matches (and deliberately does not) is written next to
 * gpii_kind_t below.
 * Does not: allocate, use regexes, or know about actions (gov_guard.h does).
 * Thread-safety: pure functions; any thread.
 */
#ifndef SY_GOV_PII_H
#define SY_GOV_PII_H

#include <stdbool.h>
#include <stddef.h>

typedef enum gpii_kind {
    /* local@domain.tld: local part [A-Za-z0-9._%+-]{1,64} (leading dots dropped), domain of
     * labels [A-Za-z0-9-] (no leading/trailing '-'), at least two labels, the last one 2+
     * letters, at most 253 bytes. A trailing '.' (end of sentence) is not part of the match.
     * Non-ASCII local parts or domains are not matched (only their ASCII tail is). */
    GPII_EMAIL = 0,
    /* International: '+' or "00", country code 1-9.., 8..15 digits in groups separated by single
     * ' ', '-', '.', '/' or a parenthesised group ("+44 (0)20 7946 0958", "+4915112345678").
     * National: NANP "(555) 123-4567", "555-123-4567", "1-800-555-1234" (area code 2-9), or a
     * trunk-prefixed number "020 7946 0958", "06 12 34 56 78", "030/1234567" (first group starts
     * with 0 then 1-9, at least two groups, 9..11 digits, one kind of separator). Never matches: a
     * plain digit run without '+' ("12345678901"), dates ("2024-01-15", "01.02.2024"), decimals,
     * numbers glued to letters or to a preceding number ("v2 555-123-4567" still matches; "x555",
     * "7 555-123-4567" do not), or runs longer than 15 digits (cards, IBANs). */
    GPII_PHONE = 1,
    /* 13..19 digits, single ' ' or '-' between digits, first digit 2-6 (Mastercard 2/5, Amex and
     * Diners 3, Visa 4, Discover/UnionPay/Maestro 6), passing the Luhn check, not glued to letters,
     * a decimal point or a longer digit run. */
    GPII_CARD = 2,
    /* Two letters (country), two check digits, BBAN [A-Za-z0-9] for 15..34 characters in all,
     * either compact ("DE89370400440532013000", a whole word) or in groups of four separated by
     * single spaces ("DE89 3704 0044 0532 0130 00", last group 1..4), passing ISO 13616 mod-97.
     * Country-specific lengths are not checked; mod-97 rejects 96 of 97 random candidates. */
    GPII_IBAN = 3,
} gpii_kind_t;

#define GPII_N 4

/* "email", "phone", "card", "iban". */
const char *gpii_name(gpii_kind_t k);
/* The kind named s (as above), or -1. */
int gpii_kind_parse(const char *s);

/* Finds the first match of detector k in text[from..len) (text borrowed; bytes before `from` are
 * only looked at as left context). True with text[*start..*end) the match, or false. */
bool gpii_next(gpii_kind_t k, const char *text, size_t len, size_t from, size_t *start,
               size_t *end);

/* Luhn check over digits[0..n) (ASCII digits only; false on any other byte or n == 0). */
bool gpii_luhn_ok(const char *digits, size_t n);
/* ISO 13616 mod-97 check of a compact IBAN s[0..n) (letters in either case, digits; false on
 * other bytes or a length outside 15..34). */
bool gpii_iban_ok(const char *s, size_t n);

#endif
