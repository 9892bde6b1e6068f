/*
 * test_engine_core.c - a real engine core (sim executor at unlimited speed, real block manager,
 * scheduler and metrics) driven by a real event loop on the test thread: completion lengths,
 * decoded text, EOS, stop strings, aborts, prefix-cache hits, failures, metrics, shutdown with
 * requests in flight, and a throughput run with 1,000 concurrent sequences.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "common/ev.h"
#include "common/metrics.h"
#include "common/status.h"
#include "engine/engine_core.h"
#include "engine/sim_exec.h"
#include "engine/tokenizer.h"

#define MAX_REQ 1100

typedef struct out {
    ecore_req_t *r;
    sy_buf_t text;
    int32_t *ids;
    uint32_t n_ids, cap_ids;
    uint32_t n_deltas, n_first, after_finish;
    bool finished;
    seq_finish_t finish;
    char stop_str[64];
    int32_t stop_token;
    uint32_t completion, prompt, cached;
    bool abort_on_first;
    /* logprobs per output token (cap_ids + 1 entries), when the request asked for them */
    float *lp;
    uint32_t *n_top;
    int32_t *top0, *top1;
    uint32_t n_lp_deltas; /* deltas that carried logprobs */
} out_t;

typedef struct env {
    ev_loop_t *loop;
    tok_t *tok;
    mx_registry_t *reg;
    ecore_t *core;
    out_t outs[MAX_REQ];
    uint32_t n_outs;
    uint32_t n_finished, want_finished;
    uint32_t n_calls;
    bool timed_out;
    bool destroyed;
} env_t;

static env_t *g_env;

static void on_output(ecore_req_t *r, const ecore_delta_t *d, void *udata)
{
    env_t *e = g_env;
    out_t *o = udata;
    assert_false(e->destroyed);
    assert_ptr_equal(ecore_req_udata(r), o);
    e->n_calls++;
    if (o->finished)
        o->after_finish++;
    o->n_deltas++;
    if (d->first)
        o->n_first++;
    sy_buf_append(&o->text, d->text, d->text_len);
    assert_true(sy_utf8_valid(d->text, d->text_len));
    assert_int_equal(d->token_index, o->n_ids);
    if (d->logprobs) {
        assert_non_null(o->lp);
        assert_non_null(d->n_top);
        o->n_lp_deltas++;
    }
    for (uint32_t i = 0; i < d->n_tokens; i++) {
        if (o->n_ids < o->cap_ids) {
            o->ids[o->n_ids] = d->token_ids[i];
            if (d->logprobs) {
                o->lp[o->n_ids] = d->logprobs[i];
                o->n_top[o->n_ids] = d->n_top[i];
                const exec_logprob_t *t = d->top_logprobs + (size_t)i * d->top_stride;
                o->top0[o->n_ids] = d->n_top[i] > 0 ? t[0].token : -1;
                o->top1[o->n_ids] = d->n_top[i] > 1 ? t[1].token : -1;
            }
        }
        o->n_ids++;
    }
    o->completion = d->completion_tokens;
    o->prompt = d->prompt_tokens;
    o->cached = d->cached_tokens;
    if (d->finished) {
        o->finished = true;
        o->finish = d->finish;
        o->stop_token = d->stop_token;
        if (d->stop_str)
            snprintf(o->stop_str, sizeof o->stop_str, "%s", d->stop_str);
        if (++e->n_finished >= e->want_finished)
            ev_stop(e->loop);
    }
    if (o->abort_on_first && !d->finished)
        ecore_abort(e->core, r);
}

static void on_timeout(ev_loop_t *loop, uint64_t id, void *udata)
{
    env_t *e = udata;
    e->timed_out = true;
    ev_stop(loop);
}

/* Runs the loop until want more requests finished, or ms elapsed. */
static void run_for(env_t *e, uint32_t want, uint64_t ms)
{
    e->want_finished = e->n_finished + want;
    e->timed_out = false;
    uint64_t t = ev_timer_add(e->loop, ms, on_timeout, e);
    ev_run(e->loop);
    if (!e->timed_out)
        ev_timer_cancel(e->loop, t);
}

typedef struct core_opts {
    uint32_t num_blocks, max_num_seqs, budget;
    double mean_out;
    double speed; /* the sim executor's time scale; 0 = unlimited */
    exec_t *exec; /* default: the sim executor at that speed */
} core_opts_t;

static env_t *env_new(const core_opts_t *o)
{
    env_t *e = sy_calloc(1, sizeof *e);
    assert_non_null(e);
    g_env = e;
    e->loop = ev_loop_create();
    e->tok = tok_byte_create();
    e->reg = mx_registry_create();
    assert_non_null(e->loop);
    sim_config_t sc = {.profile = NULL,
                       .speed = o->speed,
                       .tok = e->tok,
                       .mean_output_tokens = o->mean_out ? o->mean_out : 128};
    ecore_config_t cc = {
        .sched = {.max_num_seqs = o->max_num_seqs ? o->max_num_seqs : 64,
                  .max_num_batched_tokens = o->budget ? o->budget : 512,
                  .max_model_len = 1u << 20,
                  .enable_chunked_prefill = true},
        .kv = {.block_size = 16,
               .num_blocks = o->num_blocks ? o->num_blocks : 1024,
               .enable_prefix_caching = true,
               .hash_seed = "0"},
        .model_name = "m",
        .metrics = e->reg,
        .tok = e->tok,
        .exec = o->exec ? o->exec : sim_exec_create(&sc),
        .loop = e->loop,
        .on_output = on_output,
    };
    int st = -1;
    e->core = ecore_create(&cc, &st);
    assert_int_equal(st, ST_OK);
    assert_non_null(e->core);
    return e;
}

static void env_free(env_t *e)
{
    ecore_destroy(e->core);
    e->destroyed = true;
    for (uint32_t i = 0; i < e->n_outs; i++) {
        ecore_req_release(e->outs[i].r);
        sy_buf_deinit(&e->outs[i].text);
        sy_free(e->outs[i].ids);
        sy_free(e->outs[i].lp);
        sy_free(e->outs[i].n_top);
        sy_free(e->outs[i].top0);
        sy_free(e->outs[i].top1);
    }
    mx_registry_destroy(e->reg);
    tok_destroy(e->tok);
    ev_loop_destroy(e->loop);
    sy_free(e);
    g_env = NULL;
}

typedef struct req_opts {
    const char *prompt;
    uint32_t max_tokens, min_tokens;
    bool ignore_eos;
    const char *stop;
    const char *stop2;
    bool include_stop;
    int32_t stop_id; /* 0 = none */
    uint32_t repeat; /* prompt repeated this many times (default 1) */
    bool logprobs;
    uint32_t n_logprobs;
} req_opts_t;

static out_t *submit(env_t *e, const req_opts_t *ro)
{
    out_t *o = &e->outs[e->n_outs++];
    memset(o, 0, sizeof *o);
    o->cap_ids = ro->max_tokens < 4096 ? ro->max_tokens : 4096;
    o->ids = sy_calloc(o->cap_ids + 1, sizeof(int32_t));
    if (ro->logprobs) {
        o->lp = sy_calloc(o->cap_ids + 1, sizeof *o->lp);
        o->n_top = sy_calloc(o->cap_ids + 1, sizeof *o->n_top);
        o->top0 = sy_calloc(o->cap_ids + 1, sizeof *o->top0);
        o->top1 = sy_calloc(o->cap_ids + 1, sizeof *o->top1);
    }
    sy_buf_t ptext = SY_BUF_INIT;
    for (uint32_t i = 0; i < (ro->repeat ? ro->repeat : 1); i++)
        sy_buf_append_str(&ptext, ro->prompt);
    int32_t *ids = sy_calloc(TOK_MAX_TOKENS(ptext.len), sizeof(int32_t));
    size_t n = 0;
    assert_int_equal(
        tok_encode(e->tok, ptext.data, ptext.len, true, false, ids, TOK_MAX_TOKENS(ptext.len), &n),
        ST_OK);
    const char *stops[2] = {ro->stop, ro->stop2};
    char rid[32];
    snprintf(rid, sizeof rid, "req-%u", e->n_outs);
    ecore_req_params_t p = {
        .prompt = ids,
        .n_prompt = (uint32_t)n,
        .sp = {.temperature = 0,
               .max_tokens = ro->max_tokens,
               .min_tokens = ro->min_tokens,
               .ignore_eos = ro->ignore_eos,
               .logprobs = ro->logprobs,
               .n_logprobs = ro->n_logprobs},
        .stop = stops,
        .n_stop = ro->stop2  ? 2
                  : ro->stop ? 1
                             : 0,
        .stop_token_ids = &ro->stop_id,
        .n_stop_token_ids = ro->stop_id ? 1 : 0,
        .include_stop_str_in_output = ro->include_stop,
        .skip_special_tokens = true,
        .request_id = rid,
        .arrival_ns = sy_mono_ns(),
    };
    o->r = ecore_req_create(e->core, &p, o);
    assert_non_null(o->r);
    assert_int_equal(ecore_submit(e->core, o->r), ST_OK);
    sy_free(ids);
    sy_buf_deinit(&ptext);
    return o;
}

static void check_text_matches_ids(env_t *e, out_t *o)
{
    sy_buf_t dec = SY_BUF_INIT;
    assert_true(o->n_ids <= o->cap_ids);
    assert_int_equal(tok_decode(e->tok, o->ids, o->n_ids, true, &dec), ST_OK);
    assert_int_equal(dec.len, o->text.len);
    if (dec.len)
        assert_memory_equal(dec.data, o->text.data, dec.len);
    sy_buf_deinit(&dec);
}

/* Value (counter, gauge) or count (histogram) of a core metric with labels model_name="m",
 * engine="0" and, when given, finished_reason. Looks the family up by re-declaring it. */
static double metric(env_t *e, mx_type_t type, const char *name, const char *reason)
{
    static const char *const ln[] = {"model_name", "engine", "finished_reason"};
    const char *lv[] = {"m", "0", reason};
    size_t n = reason ? 3 : 2;
    double b[] = {1.0};
    mx_family_t *f =
        mx_family_create(e->reg, type, name, "", ln, n, b, type == MX_HISTOGRAM ? 1 : 0);
    assert_non_null(f);
    mx_series_t *s = mx_series_get(f, lv, n);
    assert_non_null(s);
    return mx_series_value(s);
}

#define COUNTER(name) metric(e, MX_COUNTER, name, NULL)
#define GAUGE(name) metric(e, MX_GAUGE, name, NULL)
#define HIST_COUNT(name) metric(e, MX_HISTOGRAM, name, NULL)
#define SUCCESS(reason) metric(e, MX_COUNTER, "vllm:request_success", reason)

static void test_max_tokens_and_text(void **state)
{
    core_opts_t co = {0};
    env_t *e = env_new(&co);
    const uint32_t N = 20;
    for (uint32_t i = 0; i < N; i++) {
        char prompt[64];
        snprintf(prompt, sizeof prompt, "Prompt number %u asks for a story.", i);
        submit(e, &(req_opts_t){.prompt = prompt, .max_tokens = 50 + i, .ignore_eos = true});
    }
    run_for(e, N, 10000);
    assert_false(e->timed_out);
    for (uint32_t i = 0; i < N; i++) {
        out_t *o = &e->outs[i];
        assert_true(o->finished);
        assert_int_equal(o->finish, SEQ_FINISH_LENGTH);
        assert_int_equal(o->completion, 50 + i);
        assert_int_equal(o->n_ids, 50 + i);
        assert_int_equal(o->n_first, 1);
        assert_int_equal(o->after_finish, 0);
        assert_int_equal(o->stop_token, -1);
        assert_int_equal(o->stop_str[0], 0);
        assert_true(o->prompt > 30);
        check_text_matches_ids(e, o);
        assert_true(o->text.len > 0);
    }
    /* greedy: the same prompt gives the same answer */
    submit(e, &(req_opts_t){.prompt = "Prompt number 3 asks for a story.",
                            .max_tokens = 53,
                            .ignore_eos = true});
    run_for(e, 1, 10000);
    assert_string_equal(e->outs[N].text.data, e->outs[3].text.data);

    ecore_status_t st;
    ecore_get_status(e->core, &st);
    assert_true(st.steps > 0);
    env_free(e);
}

static void test_eos_finishes_with_stop(void **state)
{
    core_opts_t co = {.mean_out = 8};
    env_t *e = env_new(&co);
    for (uint32_t i = 0; i < 10; i++) {
        char prompt[32];
        snprintf(prompt, sizeof prompt, "eos %u", i);
        submit(e,
               &(req_opts_t){.prompt = prompt, .max_tokens = 5000, .min_tokens = i == 9 ? 40 : 0});
    }
    run_for(e, 10, 10000);
    assert_false(e->timed_out);
    for (uint32_t i = 0; i < 10; i++) {
        out_t *o = &e->outs[i];
        assert_int_equal(o->finish, SEQ_FINISH_STOP);
        assert_int_equal(o->stop_token, -1);
        assert_int_equal(o->stop_str[0], 0);
        assert_true(o->completion < 5000);
        assert_int_equal(o->ids[o->n_ids - 1], tok_eos(e->tok)); /* EOS counts as a token */
        assert_null(strstr(o->text.data ? o->text.data : "", "</s>"));
        check_text_matches_ids(e, o);
    }
    assert_true(e->outs[9].completion >= 41);
    env_free(e);
}

static void test_stop_strings(void **state)
{
    core_opts_t co = {0};
    env_t *e = env_new(&co);
    const char *prompt = "Stop string test prompt";
    out_t *ref = submit(e, &(req_opts_t){.prompt = prompt, .max_tokens = 200, .ignore_eos = true});
    run_for(e, 1, 10000);
    assert_true(ref->finished);
    /* stop string = the 4th word with its surrounding spaces */
    const char *t = ref->text.data;
    const char *w = t;
    for (int k = 0; k < 3; k++)
        w = strchr(w + 1, ' ');
    assert_non_null(w);
    const char *w_end = strchr(w + 1, ' ');
    assert_non_null(w_end);
    char stop[64];
    snprintf(stop, sizeof stop, "%.*s", (int)(w_end - w + 1), w);
    const char *first = strstr(t, stop);
    size_t pre = (size_t)(first - t);

    out_t *a = submit(
        e, &(req_opts_t){.prompt = prompt, .max_tokens = 200, .ignore_eos = true, .stop = stop});
    out_t *b = submit(e, &(req_opts_t){.prompt = prompt,
                                       .max_tokens = 200,
                                       .ignore_eos = true,
                                       .stop = stop,
                                       .include_stop = true});
    out_t *c = submit(e, &(req_opts_t){.prompt = prompt,
                                       .max_tokens = 200,
                                       .ignore_eos = true,
                                       .stop = "this never appears in the output"});
    run_for(e, 3, 10000);
    assert_false(e->timed_out);
    assert_int_equal(a->finish, SEQ_FINISH_STOP);
    assert_string_equal(a->stop_str, stop);
    assert_int_equal(a->text.len, pre);
    assert_memory_equal(a->text.data, t, pre);
    assert_true(a->completion < 200);
    assert_int_equal(b->finish, SEQ_FINISH_STOP);
    assert_int_equal(b->text.len, pre + strlen(stop));
    assert_memory_equal(b->text.data, t, b->text.len);
    assert_int_equal(b->completion, a->completion);
    /* a stop string that never matches: the whole text arrives (held-back bytes flushed) */
    assert_int_equal(c->finish, SEQ_FINISH_LENGTH);
    assert_string_equal(c->text.data, t);
    env_free(e);
}

static void test_abort_midstream(void **state)
{
    core_opts_t co = {0};
    env_t *e = env_new(&co);
    out_t *o = submit(e, &(req_opts_t){.prompt = "abort me please, I am long enough to need blocks",
                                       .max_tokens = 2000000,
                                       .ignore_eos = true});
    o->abort_on_first = true;
    run_for(e, 1, 300); /* no finished delta: the abort hides it; the timer ends the run */
    assert_true(e->timed_out);
    assert_true(o->n_deltas >= 1);
    assert_false(o->finished);
    uint32_t seen = o->n_deltas;
    /* blocks are freed as soon as the core processed the abort */
    ecore_status_t st = {0};
    for (int i = 0; i < 2000; i++) {
        ecore_get_status(e->core, &st);
        if (st.kv.used_blocks == 0 && st.running == 0)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(st.kv.used_blocks, 0);
    assert_int_equal(st.running, 0);
    run_for(e, 1, 100);
    assert_int_equal(o->n_deltas, seen); /* no output after the abort */
    assert_true(SUCCESS("abort") >= 1.0);

    /* abort before the core even picked the request up */
    out_t *q = submit(e, &(req_opts_t){.prompt = "never runs", .max_tokens = 10});
    ecore_abort(e->core, q->r);
    ecore_abort(e->core, q->r); /* idempotent */
    run_for(e, 1, 100);
    assert_int_equal(q->n_deltas, 0);
    env_free(e);
}

static void test_cached_tokens(void **state)
{
    core_opts_t co = {0};
    env_t *e = env_new(&co);
    /* 1 BOS + 99 bytes = 100 tokens: 6 full blocks of 16 can be reused (96 tokens) */
    char prompt[100];
    memset(prompt, 'a', 99);
    for (int i = 0; i < 99; i++)
        prompt[i] = (char)('a' + i % 26);
    prompt[99] = 0;
    out_t *a = submit(e, &(req_opts_t){.prompt = prompt, .max_tokens = 4, .ignore_eos = true});
    run_for(e, 1, 10000);
    assert_int_equal(a->prompt, 100);
    assert_int_equal(a->cached, 0);
    out_t *b = submit(e, &(req_opts_t){.prompt = prompt, .max_tokens = 4, .ignore_eos = true});
    run_for(e, 1, 10000);
    assert_int_equal(b->cached, 96);
    assert_string_equal(a->text.data, b->text.data);

    /* metrics moved (values are refreshed after each step) */
    assert_true(COUNTER("vllm:prefix_cache_queries") >= 200);
    assert_true(COUNTER("vllm:prefix_cache_hits") >= 96);
    assert_true(COUNTER("vllm:generation_tokens") >= 8);
    assert_true(COUNTER("vllm:prompt_tokens") >= 200);
    assert_true(SUCCESS("length") >= 2);
    assert_true(HIST_COUNT("vllm:time_to_first_token_seconds") >= 2);
    assert_true(HIST_COUNT("vllm:inter_token_latency_seconds") >= 6);
    assert_true(HIST_COUNT("vllm:e2e_request_latency_seconds") >= 2);
    assert_true(HIST_COUNT("vllm:iteration_tokens_total") >= 2);
    assert_true(HIST_COUNT("vllm:request_queue_time_seconds") >= 2);
    assert_true(HIST_COUNT("vllm:request_params_max_tokens") >= 2);
    assert_true(HIST_COUNT("vllm:request_prompt_tokens") >= 2);
    assert_true(HIST_COUNT("vllm:request_generation_tokens") >= 2);
    assert_true(GAUGE("vllm:num_requests_running") == 0.0);
    assert_true(GAUGE("vllm:num_requests_waiting") == 0.0);
    assert_true(GAUGE("vllm:kv_cache_usage_perc") == 0.0);
    assert_true(COUNTER("vllm:num_preemptions") == 0.0);
    /* the exposition names (label order is the registry's business) */
    sy_buf_t x = SY_BUF_INIT;
    assert_int_equal(mx_registry_render(e->reg, &x), ST_OK);
    const char *names[] = {"vllm:prefix_cache_queries_total{",
                           "vllm:prefix_cache_hits_total{",
                           "vllm:request_success_total{",
                           "vllm:num_preemptions_total{",
                           "vllm:time_to_first_token_seconds_bucket{",
                           "vllm:cache_config_info{",
                           "block_size=\"16\"",
                           "num_gpu_blocks=\"1024\"",
                           "enable_prefix_caching=\"True\"",
                           "prefix_caching_hash_algo=\"sha256_cbor\"",
                           "model_name=\"m\"",
                           "engine=\"0\"",
                           "finished_reason=\"length\""};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!strstr(x.data, names[i]))
            fail_msg("missing in exposition: %s", names[i]);
    }
    sy_buf_deinit(&x);
    env_free(e);
}

static void test_too_long_fails_and_preemption(void **state)
{
    core_opts_t co = {.num_blocks = 8, .max_num_seqs = 8, .budget = 512}; /* 128 token slots */
    env_t *e = env_new(&co);
    char big[200];
    memset(big, 'x', 199);
    big[199] = 0;
    out_t *f = submit(e, &(req_opts_t){.prompt = big, .max_tokens = 4, .ignore_eos = true});
    /* four sequences of 20 + 40 tokens need 4 blocks each: preemption must happen */
    out_t *g[4];
    for (int i = 0; i < 4; i++) {
        char p[64];
        snprintf(p, sizeof p, "preempt %d %s", i, "....................");
        g[i] = submit(e, &(req_opts_t){.prompt = p, .max_tokens = 40, .ignore_eos = true});
    }
    run_for(e, 5, 10000);
    assert_false(e->timed_out);
    assert_int_equal(f->finish, SEQ_FINISH_ERROR);
    assert_int_equal(f->completion, 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(g[i]->finish, SEQ_FINISH_LENGTH);
        assert_int_equal(g[i]->completion, 40);
        check_text_matches_ids(e, g[i]);
    }
    assert_true(COUNTER("vllm:num_preemptions") >= 1.0);
    assert_true(SUCCESS("error") == 1.0);
    env_free(e);
}

static void test_abort_all_and_destroy_in_flight(void **state)
{
    /* paced in real time (the A100 timing model), so no sequence can fill the KV cache and fail
     * as too long before the abort, however the test thread is scheduled; at unlimited speed five
     * sequences reached 16k tokens within the 50 ms window on a loaded machine */
    core_opts_t co = {.speed = 1};
    env_t *e = env_new(&co);
    for (int i = 0; i < 5; i++)
        submit(e,
               &(req_opts_t){.prompt = "long running", .max_tokens = 1000000, .ignore_eos = true});
    run_for(e, 0, 50); /* want 0: stops at the first finished delta or the timer */
    ecore_abort_all(e->core);
    run_for(e, 5, 5000);
    assert_false(e->timed_out);
    for (int i = 0; i < 5; i++)
        assert_int_equal(e->outs[i].finish, SEQ_FINISH_ABORT); /* delivered: not client aborts */

    /* destroy with requests running and deltas pending: no callbacks, no leaks */
    for (int i = 0; i < 5; i++)
        submit(e, &(req_opts_t){.prompt = "in flight", .max_tokens = 1000000, .ignore_eos = true});
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    env_free(e);
}

/* An executor that replays a fixed byte script (then EOS) for every request. */
typedef struct script_exec {
    exec_t super;
    const char *script;
    int32_t eos;
} script_exec_t;

/* Logprobs of the script executor: the token at output position pos gets -(pos + 1), and its
 * top list is {token, -(pos + 1)}, {token + 1, -(pos + 2)} (cut to the request's n_logprobs). */
static exec_logprob_t g_script_top[64][2];

static int script_execute(exec_t *x, const sched_plan_t *p, int32_t *sampled, exec_sample_lp_t *lps,
                          uint32_t *n)
{
    script_exec_t *se = (script_exec_t *)x;
    size_t len = strlen(se->script);
    *n = 0;
    for (uint32_t i = 0; i < p->n_items; i++) {
        if (!p->items[i].sample)
            continue;
        const sched_seq_t *s = p->items[i].seq;
        uint32_t pos = s->n_tokens - s->n_prompt;
        int32_t tok = pos < len ? (unsigned char)se->script[pos] : se->eos;
        if (lps) {
            lps[*n] = (exec_sample_lp_t){.valid = false};
            if (s->sp.logprobs && *n < 64) {
                g_script_top[*n][0] = (exec_logprob_t){tok, -(float)(pos + 1)};
                g_script_top[*n][1] = (exec_logprob_t){tok + 1, -(float)(pos + 2)};
                lps[*n] = (exec_sample_lp_t){.valid = true,
                                             .logprob = -(float)(pos + 1),
                                             .rank = 1,
                                             .top = g_script_top[*n],
                                             .n_top = s->sp.n_logprobs < 2 ? s->sp.n_logprobs : 2};
            }
        }
        sampled[(*n)++] = tok;
    }
    return ST_OK;
}

static void script_destroy(exec_t *x)
{
    sy_free(x);
}

static const exec_vtable_t k_script_vt = {
    .name = "script", .execute = script_execute, .destroy = script_destroy};

static exec_t *script_create(const char *script)
{
    script_exec_t *se = sy_calloc(1, sizeof *se);
    se->super.vt = &k_script_vt;
    se->script = script;
    se->eos = 257;
    return &se->super;
}

static void test_stop_conditions_multibyte(void **state)
{
    static const char script[] = "Hello w\xC3\xB6rld \xF0\x9F\x98\x80 END more text";
    core_opts_t co = {.exec = script_create(script)};
    env_t *e = env_new(&co);
    const uint32_t M = 1000;
    out_t *full = submit(e, &(req_opts_t){.prompt = "p", .max_tokens = M});
    out_t *s1 = submit(e, &(req_opts_t){.prompt = "p", .max_tokens = M, .stop = "w\xC3\xB6r"});
    out_t *s2 = submit(
        e, &(req_opts_t){
               .prompt = "p", .max_tokens = M, .stop = "\xF0\x9F\x98\x80", .include_stop = true});
    out_t *s3 = submit(e, &(req_opts_t){.prompt = "p", .max_tokens = M, .stop_id = ' '});
    out_t *s4 = submit(
        e, &(req_opts_t){.prompt = "p", .max_tokens = M, .stop_id = ' ', .include_stop = true});
    out_t *s5 =
        submit(e, &(req_opts_t){.prompt = "p", .max_tokens = M, .stop_id = ' ', .min_tokens = 7});
    out_t *s6 = submit(e, &(req_opts_t){.prompt = "p", .max_tokens = 9, .stop = "rld"});
    out_t *s7 =
        submit(e, &(req_opts_t){.prompt = "p", .max_tokens = M, .stop = "xyz", .stop2 = "END"});
    out_t *s8 = submit(e, &(req_opts_t){.prompt = "p", .max_tokens = 10, .stop = "wörld!"});
    run_for(e, 9, 10000);
    assert_false(e->timed_out);

    assert_int_equal(full->finish, SEQ_FINISH_STOP); /* EOS */
    assert_string_equal(full->text.data, script);
    assert_int_equal(full->completion, strlen(script) + 1);

    assert_int_equal(s1->finish, SEQ_FINISH_STOP);
    assert_string_equal(s1->stop_str, "w\xC3\xB6r");
    assert_string_equal(s1->text.data, "Hello ");

    assert_string_equal(s2->text.data, "Hello w\xC3\xB6rld \xF0\x9F\x98\x80");
    assert_string_equal(s2->stop_str, "\xF0\x9F\x98\x80");

    assert_int_equal(s3->finish, SEQ_FINISH_STOP);
    assert_int_equal(s3->stop_token, ' ');
    assert_string_equal(s3->text.data, "Hello");
    assert_int_equal(s3->completion, 6);
    assert_string_equal(s4->text.data, "Hello ");

    assert_string_equal(s5->text.data, "Hello w\xC3\xB6rld"); /* the first space was too early */
    assert_int_equal(s5->completion, 13);

    /* LENGTH at 9 tokens ("Hello w" + 2 bytes of o-umlaut), then "rld" never comes */
    assert_int_equal(s6->finish, SEQ_FINISH_LENGTH);
    assert_string_equal(s6->text.data, "Hello w\xC3\xB6");

    assert_string_equal(s7->stop_str, "END");
    assert_string_equal(s7->text.data, "Hello w\xC3\xB6rld \xF0\x9F\x98\x80 ");

    /* LENGTH inside a held-back partial match: everything is flushed at the end */
    assert_int_equal(s8->finish, SEQ_FINISH_LENGTH);
    assert_string_equal(s8->text.data, "Hello w\xC3\xB6r");
    env_free(e);
}

/* Logprobs travel with their tokens: one row per output token (EOS, a stop token and the token
 * that completes a stop string included, as vLLM), in the delta that carries the token, with the
 * executor's values; requests without logprobs get none; the sim executor refuses them. */
static void check_script_lp(const out_t *o, const char *script, uint32_t n_top_want)
{
    size_t len = strlen(script);
    for (uint32_t i = 0; i < o->n_ids; i++) {
        int32_t tok = i < len ? (unsigned char)script[i] : 257;
        assert_int_equal(o->ids[i], tok);
        assert_true(o->lp[i] == -(float)(i + 1));
        assert_int_equal(o->n_top[i], n_top_want);
        if (n_top_want > 0)
            assert_int_equal(o->top0[i], tok);
        if (n_top_want > 1)
            assert_int_equal(o->top1[i], tok + 1);
    }
}

static void test_logprobs_carried(void **state)
{
    static const char script[] = "Hello w\xC3\xB6rld \xF0\x9F\x98\x80 END more text";
    core_opts_t co = {.exec = script_create(script)};
    env_t *e = env_new(&co);
    const uint32_t M = 1000;
    out_t *full =
        submit(e, &(req_opts_t){.prompt = "p", .max_tokens = M, .logprobs = true, .n_logprobs = 2});
    out_t *stop = submit(e, &(req_opts_t){.prompt = "p",
                                          .max_tokens = M,
                                          .stop = "w\xC3\xB6r",
                                          .logprobs = true,
                                          .n_logprobs = 1});
    out_t *stop_id =
        submit(e, &(req_opts_t){.prompt = "p", .max_tokens = M, .stop_id = ' ', .logprobs = true});
    out_t *none = submit(e, &(req_opts_t){.prompt = "p", .max_tokens = 5});
    run_for(e, 4, 10000);
    assert_false(e->timed_out);
    /* EOS ends it: len + 1 rows, the EOS one included */
    assert_int_equal(full->finish, SEQ_FINISH_STOP);
    assert_int_equal(full->n_ids, strlen(script) + 1);
    assert_int_equal(full->completion, full->n_ids);
    check_script_lp(full, script, 2);
    assert_true(full->n_lp_deltas >= 1);
    /* the stop string's text is cut, its tokens keep their rows: "Hello w" + 2 bytes + "r" */
    assert_string_equal(stop->text.data, "Hello ");
    assert_int_equal(stop->n_ids, 10);
    assert_int_equal(stop->completion, 10);
    check_script_lp(stop, script, 1);
    /* the stop token's row is there too */
    assert_int_equal(stop_id->stop_token, ' ');
    assert_int_equal(stop_id->n_ids, 6);
    check_script_lp(stop_id, script, 0);
    assert_int_equal(none->n_ids, 5);
    assert_int_equal(none->n_lp_deltas, 0);
    env_free(e);

    /* the sim executor has no distribution: the request fails instead of inventing numbers */
    core_opts_t so = {.speed = 0};
    e = env_new(&so);
    out_t *sim = submit(e, &(req_opts_t){.prompt = "p", .max_tokens = 5, .logprobs = true});
    out_t *ok = submit(e, &(req_opts_t){.prompt = "q", .max_tokens = 5, .ignore_eos = true});
    run_for(e, 2, 10000);
    assert_false(e->timed_out);
    assert_int_equal(sim->finish, SEQ_FINISH_ERROR);
    assert_int_equal(sim->text.len, 0);
    assert_int_equal(ok->finish, SEQ_FINISH_LENGTH); /* its batch neighbour is not affected */
    assert_int_equal(ok->n_ids, 5);
    env_free(e);
}

static void test_create_failures(void **state)
{
    ev_loop_t *loop = ev_loop_create();
    tok_t *tok = tok_byte_create();
    sim_config_t sc = {.speed = 0, .tok = tok};
    ecore_config_t cc = {
        .sched = {.max_num_seqs = 8,
                  .max_num_batched_tokens = 64,
                  .max_model_len = 1024,
                  .enable_chunked_prefill = true},
        .kv = {.block_size = 16, .num_blocks = 0, .enable_prefix_caching = true},
        .model_name = "m",
        .tok = tok,
        .exec = sim_exec_create(&sc),
        .loop = loop,
        .on_output = on_output,
    };
    int st = ST_OK;
    assert_null(ecore_create(&cc, &st)); /* zero blocks; the executor is freed */
    assert_int_not_equal(st, ST_OK);

    /* every allocation failure inside create is cleaned up (ASan checks for leaks) */
    cc.kv.num_blocks = 64;
    int n_ok = 0;
    for (uint64_t n = 1; n < 5000 && n_ok < 3; n++) {
        mx_registry_t *reg = mx_registry_create();
        cc.metrics = reg;
        cc.exec = sim_exec_create(&sc);
        sy_alloc_fail_after(n);
        ecore_t *c = ecore_create(&cc, &st);
        sy_alloc_fail_after(0);
        if (c) {
            n_ok++;
            ecore_destroy(c);
        } else {
            assert_int_not_equal(st, ST_OK);
        }
        mx_registry_destroy(reg);
    }
    assert_true(n_ok > 0);
    tok_destroy(tok);
    ev_loop_destroy(loop);
}

static void test_throughput_1000_seqs(void **state)
{
    core_opts_t co = {.num_blocks = 20000, .max_num_seqs = 1024, .budget = 8192};
    env_t *e = env_new(&co);
    const uint32_t N = 1000, T = 200;
    double t0 = (double)sy_mono_ns() * 1e-9;
    for (uint32_t i = 0; i < N; i++) {
        char p[64];
        snprintf(p, sizeof p, "throughput request %u with a short prompt", i);
        submit(e, &(req_opts_t){.prompt = p, .max_tokens = T, .ignore_eos = true});
    }
    run_for(e, N, 120000);
    double dt = (double)sy_mono_ns() * 1e-9 - t0;
    assert_false(e->timed_out);
    uint64_t total = 0;
    for (uint32_t i = 0; i < N; i++) {
        assert_int_equal(e->outs[i].completion, T);
        total += e->outs[i].completion;
    }
    ecore_status_t st;
    ecore_get_status(e->core, &st);
    printf("throughput: %llu tokens from %u concurrent sequences in %.3f s = %.0f tokens/s "
           "(%llu steps)\n",
           (unsigned long long)total, N, dt, (double)total / dt, (unsigned long long)st.steps);
    env_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_tokens_and_text),
        cmocka_unit_test(test_eos_finishes_with_stop),
        cmocka_unit_test(test_stop_strings),
        cmocka_unit_test(test_abort_midstream),
        cmocka_unit_test(test_cached_tokens),
        cmocka_unit_test(test_too_long_fails_and_preemption),
        cmocka_unit_test(test_abort_all_and_destroy_in_flight),
        cmocka_unit_test(test_stop_conditions_multibyte),
        cmocka_unit_test(test_logprobs_carried),
        cmocka_unit_test(test_create_failures),
        cmocka_unit_test(test_throughput_1000_seqs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
