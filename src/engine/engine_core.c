/*
 * engine_core.c - the engine loop thread and its output processor.
 *
 * Threads and hand-offs:
 *   loop thread (HTTP)   ecore_submit / ecore_abort push requests on two FIFO queues guarded by
 *                        c->mu and signal c->cv. ecore_abort takes an extra reference for the
 *                        abort queue, dropped by the core once it processed the abort.
 *   core thread          waits on c->cv while idle; otherwise per iteration: take both queues,
 *                        admit / abort, run one step (sched_plan -> exec_execute ->
 *                        sched_step_done -> per sampled token: stop checks, detokenize, stop
 *                        strings), then publish: under c->out_mu, every request touched by the
 *                        step moves its new text into its pending buffer (a pointer swap when
 *                        the loop consumed the previous one) and is linked into the ready list;
 *                        one ev_async_send per step, and only when the list was empty.
 *   loop thread again    the async callback takes the whole ready list under c->out_mu (swapping
 *                        each pending buffer with a loop-side buffer), then calls on_output
 *                        outside the lock, skipping aborted requests; after a finished delta it
 *                        drops the core's reference.
 * So the core's reference is always dropped on the loop thread, after the final delta (a
 * finished request, a failed one, or an aborted one whose final delta is simply not shown), and
 * a request is never freed while it sits in a queue or the ready list.
 *
 * Request lifecycle (core's view; the sequence inside has its own, see sched.c):
 *   from        to          function                    note
 *   created     queued      ecore_submit                core reference taken, sub queue
 *   queued      active      core_take_submits           sched_add; in c->active
 *   queued      done        core_take_submits           aborted before the core saw it
 *   active      done        req_finish                  stop / length / error / abort: leaves the
 *                                                       scheduler and executor, final delta queued
 *   done        delivered   on_ready                    final delta shown (unless aborted), core
 *                                                       reference dropped
 * ecore_destroy drops the core reference of requests in any state without delivering anything.
 *
 * P/D (kv_xfer.h), with a connector:
 *   producer  a kv_remote_decode request that finishes with stop or length moves its block
 *             table into a lease (kvx_lease_add) instead of releasing it; the final delta
 *             carries the lease (ecore_kv_lease_t). Leases released by the consumer or expired
 *             are collected each iteration (kvx_lease_collect), which releases their blocks;
 *             the idle core sleeps until the next expiry at the latest.
 *   consumer  a request with kv_remote is not given to the scheduler at once:
 *               queued --core_take_submits--> pulling    the full prompt blocks it does not
 *                                                        hold are reserved in r->pin and a
 *                                                        pull job is queued (the job holds a
 *                                                        reference to r); seq state FINISHED
 *                                                        meanwhile (in no scheduler list)
 *               pulling --job ok--> waiting (pinned)     pin committed to the prefix cache,
 *                                                        sched_add; the admission finds the
 *                                                        blocks cached; the pin is released
 *                                                        once the sequence left WAITING
 *               pulling --job failed--> waiting          pin released, sched_add: the prompt
 *                                                        is recomputed here
 *             Nothing to pull (all cached, or no full block) or no room to pull into: the
 *             lease is released on the producer and the request goes straight to sched_add.
 *             An abort during a pull finishes the request at once; its pin waits for the job.
 *
 * Text of a request lives in three rotating buffers: cbuf (core: text of this step), pbuf
 * (published, guarded by out_mu), lbuf (loop: being delivered). With stop strings, detokenized
 * text first goes to obuf, which keeps the bytes not yet emitted (the holdback of longest stop
 * string - 1 bytes, as vLLM's stop_buffer_length) plus as many already-emitted bytes as a match
 * can reach back; each new token searches only that window. Token ids are not copied: a delta
 * points into seq.tokens, which only grows and never moves. Logprobs (when asked for) are
 * copied from the executor's borrowed lists into per-request arrays sized at create, one row per
 * output token, and a delta points into those the same way; every output token has its row,
 * including an EOS / stop token and the token that completed a stop string (as vLLM, whose
 * logprobs follow the token ids, not the truncated text).
 *
 * Stop conditions follow vLLM v1 (core/sched/utils.py check_stop, then the detokenizer's stop
 * strings): with at least min_tokens outputs, EOS (unless ignore_eos) and stop_token_ids stop;
 * then max_tokens / max_model_len give LENGTH; a stop string (checked once more than min_tokens
 * outputs exist, also after a LENGTH) overrides with STOP and truncates the text. The EOS / stop
 * token's own text is not emitted unless include_stop_str_in_output.
 * Does not: parse HTTP (api.c), or sample (the executor).
 * Thread-safety: see engine_core.h; everything after the [loop] functions runs on the core thread.
 */
#include "engine/engine_core.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/status.h"
#include "common/thread.h"

#define N_FINISH 5 /* seq_finish_t values */

struct ecore_req {
    atomic_int refs;
    atomic_bool aborted; /* set by ecore_abort: no more on_output */
    ecore_t *core;
    void *udata;
    sched_seq_t seq;

    /* parameters, immutable after create */
    char **stop;
    size_t *stop_len;
    size_t n_stop;
    size_t max_stop;
    int32_t *stop_ids;
    size_t n_stop_ids;
    bool include_stop;
    bool skip_special;
    char *salt;
    uint32_t holdback;

    /* P/D (core thread, except lease_out which the loop reads after the final publish) */
    bool kv_remote_decode;
    char *kv_rid;  /* request id (lease ids derive from it) */
    char *kv_host; /* consumer: remote host, NULL = no pull */
    int kv_port;
    char *kv_lease;       /* remote_request_id */
    uint32_t *kv_rblocks; /* remote block ids */
    uint32_t kv_n_rblocks;
    kvb_seq_t pin; /* pulled (or cached) blocks held until admission */
    bool pulling, pinned;
    uint32_t kv_pull_tokens;
    ecore_req_t *pin_prev, *pin_next;
    bool has_lease;
    char lease_id[KVX_ID_MAX];
    uint32_t *lease_blocks;
    ecore_kv_lease_t lease_out;

    /* logprobs, when sp.logprobs (allocated at create for max_tokens outputs; written by the
     * core thread at index n_out - 1, read by the loop thread for indices already published) */
    float *lp_val;          /* (max_tokens) the sampled token's logprob */
    exec_logprob_t *lp_top; /* (max_tokens, lp_stride) */
    uint32_t *lp_ntop;      /* (max_tokens) filled entries per row */
    uint32_t lp_stride;

    /* loop thread */
    bool submitted;
    bool final_delivered;
    ecore_req_t *l_next; /* delivery batch */
    sy_buf_t lbuf;
    uint32_t d_from, d_to, d_cached;
    bool d_finished;
    seq_finish_t d_finish;
    const char *d_stop_str;
    int32_t d_stop_tok;

    /* queues (c->mu) */
    ecore_req_t *sub_next, *abt_next;

    /* core thread */
    bool core_done; /* final delta queued; the request left the scheduler */
    bool touched;
    ecore_req_t *t_next;
    ecore_req_t *act_prev, *act_next;
    tok_stream_t ts;
    sy_buf_t obuf; /* stop-string window: [0, emit_off) emitted tail, [emit_off, len) held */
    size_t emit_off;
    sy_buf_t cbuf;
    seq_finish_t c_finish;
    const char *c_stop_str;
    int32_t c_stop_tok;

    /* pending delta (c->out_mu) */
    bool in_ready;
    ecore_req_t *r_next;
    sy_buf_t pbuf;
    uint32_t p_from, p_to, p_cached;
    bool p_finished;
    seq_finish_t p_finish;
    const char *p_stop_str;
    int32_t p_stop_tok;
};

typedef struct core_metrics {
    mx_series_t *running, *waiting, *kv_usage;
    mx_series_t *pc_queries, *pc_hits, *preemptions, *prompt_tokens, *gen_tokens;
    mx_series_t *success[N_FINISH];
    mx_series_t *ttft, *itl, *e2e, *queue_time;
    mx_series_t *req_prompt, *req_gen, *iter_tokens, *max_tokens;
    mx_series_t *cache_info;
    mx_series_t *pd_leased, *pd_pulled, *pd_cached, *pd_recomputed;
} core_metrics_t;

struct ecore {
    const tok_t *tok;
    exec_t *exec;
    kvb_mgr_t *kv;
    sched_t *sched;
    ev_loop_t *loop;
    ev_async_t *async;
    ecore_on_output_cb on_output;
    uint32_t max_model_len;
    uint32_t max_num_seqs;

    pthread_t thread;
    bool thread_started;

    /* submit / abort queues and control flags */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ecore_req_t *sub_head, *sub_tail, *abt_head, *abt_tail;
    bool stop;
    bool abort_all;
    bool kvx_pending; /* the connector has something to collect or take */

    /* ready list */
    pthread_mutex_t out_mu;
    ecore_req_t *ready_head, *ready_tail;

    /* status snapshot */
    pthread_mutex_t st_mu;
    ecore_status_t status;

    kvx_t *kvx; /* owned, may be NULL */
    uint32_t n_pulling;
    ecore_req_t *pinned; /* requests holding a pin (doubly linked by pin_prev/pin_next) */

    /* core thread */
    ecore_req_t *active; /* submitted, not finished (doubly linked) */
    ecore_req_t *touched;
    int32_t *sampled;      /* (max_num_seqs) */
    exec_sample_lp_t *lps; /* (max_num_seqs) */
    uint64_t steps;
    kvb_stats_t last_kv;
    uint64_t last_preemptions;

    /* loop thread */
    uint64_t id_counter;

    mx_registry_t *own_reg; /* when cfg->metrics was NULL */
    core_metrics_t mx;
};

/* ------------------------------------------------------------ metrics */

static const double k_ttft_buckets[] = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                        0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                        20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
static const double k_itl_buckets[] = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                       0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
static const double k_latency_buckets[] = {0.3,  0.5,   0.8,   1.0,   1.5,   2.0,    2.5,
                                           5.0,  10.0,  15.0,  20.0,  30.0,  40.0,   50.0,
                                           60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
static const double k_iter_buckets[] = {1,   8,    16,   32,   64,   128,  256,
                                        512, 1024, 2048, 4096, 8192, 16384};

#define NB(a) (sizeof(a) / sizeof((a)[0]))

static mx_series_t *mx_make(mx_registry_t *reg, mx_type_t type, const char *name, const char *help,
                            const double *buckets, size_t n_buckets, const char *model)
{
    static const char *const labels[] = {"model_name", "engine"};
    mx_family_t *f = mx_family_create(reg, type, name, help, labels, 2, buckets, n_buckets);
    if (!f)
        return NULL;
    const char *values[] = {model, "0"};
    return mx_series_get(f, values, 2);
}

static int metrics_init(ecore_t *c, mx_registry_t *reg, const ecore_config_t *cfg)
{
    core_metrics_t *m = &c->mx;
    const char *model = cfg->model_name ? cfg->model_name : "switchyard";
    double tok_buckets[64];
    size_t n_tok = mx_buckets_125(c->max_model_len ? c->max_model_len : 131072, tok_buckets, 64);

    m->running = mx_make(reg, MX_GAUGE, "vllm:num_requests_running",
                         "Number of requests in model execution batches.", NULL, 0, model);
    m->waiting = mx_make(reg, MX_GAUGE, "vllm:num_requests_waiting",
                         "Number of requests waiting to be processed.", NULL, 0, model);
    m->kv_usage = mx_make(reg, MX_GAUGE, "vllm:kv_cache_usage_perc",
                          "KV-cache usage. 1 means 100 percent usage.", NULL, 0, model);
    m->pc_queries =
        mx_make(reg, MX_COUNTER, "vllm:prefix_cache_queries",
                "Prefix cache queries, in terms of number of queried tokens.", NULL, 0, model);
    m->pc_hits = mx_make(reg, MX_COUNTER, "vllm:prefix_cache_hits",
                         "Prefix cache hits, in terms of number of cached tokens.", NULL, 0, model);
    m->preemptions = mx_make(reg, MX_COUNTER, "vllm:num_preemptions",
                             "Cumulative number of preemption from the engine.", NULL, 0, model);
    m->prompt_tokens = mx_make(reg, MX_COUNTER, "vllm:prompt_tokens",
                               "Number of prefill tokens processed.", NULL, 0, model);
    m->gen_tokens = mx_make(reg, MX_COUNTER, "vllm:generation_tokens",
                            "Number of generation tokens processed.", NULL, 0, model);
    m->ttft = mx_make(reg, MX_HISTOGRAM, "vllm:time_to_first_token_seconds",
                      "Histogram of time to first token in seconds.", k_ttft_buckets,
                      NB(k_ttft_buckets), model);
    m->itl = mx_make(reg, MX_HISTOGRAM, "vllm:inter_token_latency_seconds",
                     "Histogram of inter-token latency in seconds.", k_itl_buckets,
                     NB(k_itl_buckets), model);
    m->e2e = mx_make(reg, MX_HISTOGRAM, "vllm:e2e_request_latency_seconds",
                     "Histogram of e2e request latency in seconds.", k_latency_buckets,
                     NB(k_latency_buckets), model);
    m->queue_time = mx_make(reg, MX_HISTOGRAM, "vllm:request_queue_time_seconds",
                            "Histogram of time spent in WAITING phase for request.",
                            k_latency_buckets, NB(k_latency_buckets), model);
    m->req_prompt = mx_make(reg, MX_HISTOGRAM, "vllm:request_prompt_tokens",
                            "Number of prefill tokens processed.", tok_buckets, n_tok, model);
    m->req_gen = mx_make(reg, MX_HISTOGRAM, "vllm:request_generation_tokens",
                         "Number of generation tokens processed.", tok_buckets, n_tok, model);
    m->max_tokens =
        mx_make(reg, MX_HISTOGRAM, "vllm:request_params_max_tokens",
                "Histogram of the max_tokens request parameter.", tok_buckets, n_tok, model);
    m->iter_tokens = mx_make(reg, MX_HISTOGRAM, "vllm:iteration_tokens_total",
                             "Histogram of number of tokens per engine_step.", k_iter_buckets,
                             NB(k_iter_buckets), model);
    if (!m->running || !m->waiting || !m->kv_usage || !m->pc_queries || !m->pc_hits ||
        !m->preemptions || !m->prompt_tokens || !m->gen_tokens || !m->ttft || !m->itl || !m->e2e ||
        !m->queue_time || !m->req_prompt || !m->req_gen || !m->max_tokens || !m->iter_tokens)
        return ST_NOMEM;

    static const char *const sl[] = {"model_name", "engine", "finished_reason"};
    mx_family_t *fs = mx_family_create(reg, MX_COUNTER, "vllm:request_success",
                                       "Count of successfully processed requests.", sl, 3, NULL, 0);
    if (!fs)
        return ST_NOMEM;
    for (int f = SEQ_FINISH_STOP; f < N_FINISH; f++) {
        const char *v[] = {model, "0", seq_finish_str((seq_finish_t)f)};
        m->success[f] = mx_series_get(fs, v, 3);
        if (!m->success[f])
            return ST_NOMEM;
    }

    static const char *const cl[] = {"block_size",
                                     "cache_dtype",
                                     "enable_prefix_caching",
                                     "num_gpu_blocks",
                                     "prefix_caching_hash_algo",
                                     "engine"};
    mx_family_t *fc = mx_family_create(reg, MX_GAUGE, "vllm:cache_config_info",
                                       "Information of the LLMEngine CacheConfig", cl, 6, NULL, 0);
    if (!fc)
        return ST_NOMEM;
    kvb_stats_t st;
    kvb_get_stats(c->kv, &st);
    char bs[16], nb[16];
    snprintf(bs, sizeof bs, "%u", kvb_block_size(c->kv));
    snprintf(nb, sizeof nb, "%u", st.num_blocks);
    const char *cv[] = {bs, "auto",        cfg->kv.enable_prefix_caching ? "True" : "False",
                        nb, "sha256_cbor", "0"};
    m->cache_info = mx_series_get(fc, cv, 6);
    if (!m->cache_info)
        return ST_NOMEM;

    static const char *const pl[] = {"model_name", "path"};
    mx_family_t *fp = mx_family_create(
        reg, MX_COUNTER, "switchyard:kv_transfer_requests",
        "P/D requests by path: leased (prefill kept its KV for a decode engine), pulled (decode "
        "pulled the prompt KV), cached (decode held it already), recomputed (decode computed "
        "the prompt itself after a failed or impossible pull).",
        pl, 2, NULL, 0);
    if (!fp)
        return ST_NOMEM;
    const char *pv[][2] = {
        {model, "leased"}, {model, "pulled"}, {model, "cached"}, {model, "recomputed"}};
    m->pd_leased = mx_series_get(fp, pv[0], 2);
    m->pd_pulled = mx_series_get(fp, pv[1], 2);
    m->pd_cached = mx_series_get(fp, pv[2], 2);
    m->pd_recomputed = mx_series_get(fp, pv[3], 2);
    if (!m->pd_leased || !m->pd_pulled || !m->pd_cached || !m->pd_recomputed)
        return ST_NOMEM;
    mx_gauge_set(m->cache_info, 1.0);
    return ST_OK;
}

/* Gauges, counter deltas and the status snapshot, after each step and when going idle. */
static void core_update_stats(ecore_t *c)
{
    kvb_stats_t st;
    kvb_get_stats(c->kv, &st);
    uint32_t running = sched_num_running(c->sched), waiting = sched_num_waiting(c->sched);
    double usage = kvb_usage(c->kv);
    mx_gauge_set(c->mx.running, running);
    mx_gauge_set(c->mx.waiting, waiting);
    mx_gauge_set(c->mx.kv_usage, usage);
    if (st.queries > c->last_kv.queries)
        mx_counter_add(c->mx.pc_queries, (double)(st.queries - c->last_kv.queries));
    if (st.hits > c->last_kv.hits)
        mx_counter_add(c->mx.pc_hits, (double)(st.hits - c->last_kv.hits));
    c->last_kv = st;
    uint64_t pre = sched_num_preemptions(c->sched);
    if (pre > c->last_preemptions)
        mx_counter_add(c->mx.preemptions, (double)(pre - c->last_preemptions));
    c->last_preemptions = pre;

    pthread_mutex_lock(&c->st_mu);
    c->status.running = running;
    c->status.waiting = waiting;
    c->status.kv_usage = usage;
    c->status.steps = c->steps;
    c->status.kv = st;
    pthread_mutex_unlock(&c->st_mu);
}

/* ------------------------------------------------------------ requests */

static void req_free(ecore_req_t *r)
{
    kvb_seq_deinit(&r->seq.kv);
    sy_free(r->seq.tokens);
    for (size_t i = 0; i < r->n_stop; i++)
        sy_free(r->stop[i]);
    sy_free(r->stop);
    sy_free(r->stop_len);
    sy_free(r->stop_ids);
    sy_free(r->salt);
    tok_stream_deinit(&r->ts);
    sy_buf_deinit(&r->obuf);
    sy_buf_deinit(&r->cbuf);
    sy_buf_deinit(&r->pbuf);
    sy_buf_deinit(&r->lbuf);
    sy_free(r->lp_val);
    sy_free(r->lp_top);
    sy_free(r->lp_ntop);
    kvb_seq_deinit(&r->pin);
    sy_free(r->kv_rid);
    sy_free(r->kv_host);
    sy_free(r->kv_lease);
    sy_free(r->kv_rblocks);
    sy_free(r->lease_blocks);
    sy_free(r);
}

void ecore_req_release(ecore_req_t *r)
{
    if (r && atomic_fetch_sub(&r->refs, 1) == 1)
        req_free(r);
}

void *ecore_req_udata(const ecore_req_t *r)
{
    return r->udata;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

ecore_req_t *ecore_req_create(ecore_t *c, const ecore_req_params_t *p, void *udata)
{
    if (!c || !p || !p->prompt || p->n_prompt == 0)
        return NULL;
    uint32_t max_tokens = p->sp.max_tokens ? p->sp.max_tokens : 1;
    uint64_t cap = (uint64_t)p->n_prompt + max_tokens;
    if (cap > UINT32_MAX)
        return NULL;
    ecore_req_t *r = sy_calloc(1, sizeof *r);
    if (!r)
        return NULL;
    atomic_init(&r->refs, 1);
    atomic_init(&r->aborted, false);
    r->core = c;
    r->udata = udata;
    tok_stream_init(&r->ts);
    sched_seq_t *s = &r->seq;
    s->tokens = sy_malloc((size_t)cap * sizeof(int32_t));
    if (!s->tokens)
        goto fail;
    memcpy(s->tokens, p->prompt, (size_t)p->n_prompt * sizeof(int32_t));
    if (p->n_prompt)
        r->ts._prev = p->prompt[p->n_prompt - 1]; /* SentencePiece keeps the first piece's space */
    s->n_prompt = s->n_tokens = p->n_prompt;
    s->cap_tokens = (uint32_t)cap;
    s->sp = p->sp;
    s->sp.max_tokens = max_tokens;
    s->arrival_ns = p->arrival_ns ? p->arrival_ns : sy_mono_ns();
    s->id_hash = p->request_id ? hash_str(p->request_id)
                               : hash_str("req") ^ (++c->id_counter * 0x9E3779B97F4A7C15ull);
    s->owner = r;

    if (p->n_stop) {
        r->stop = sy_calloc(p->n_stop, sizeof *r->stop);
        r->stop_len = sy_calloc(p->n_stop, sizeof *r->stop_len);
        if (!r->stop || !r->stop_len)
            goto fail;
        for (size_t i = 0; i < p->n_stop; i++) {
            size_t len = p->stop[i] ? strlen(p->stop[i]) : 0;
            if (len == 0)
                continue; /* an empty stop string would match everywhere */
            r->stop[r->n_stop] = sy_strdup(p->stop[i]);
            if (!r->stop[r->n_stop])
                goto fail;
            r->stop_len[r->n_stop++] = len;
            if (len > r->max_stop)
                r->max_stop = len;
        }
    }
    if (p->n_stop_token_ids) {
        r->stop_ids = sy_malloc(p->n_stop_token_ids * sizeof(int32_t));
        if (!r->stop_ids)
            goto fail;
        memcpy(r->stop_ids, p->stop_token_ids, p->n_stop_token_ids * sizeof(int32_t));
        r->n_stop_ids = p->n_stop_token_ids;
    }
    r->include_stop = p->include_stop_str_in_output;
    r->skip_special = p->skip_special_tokens;
    r->holdback = r->n_stop && !r->include_stop ? (uint32_t)(r->max_stop - 1) : 0;
    if (p->cache_salt && !(r->salt = sy_strdup(p->cache_salt)))
        goto fail;
    if (p->sp.logprobs) {
        r->lp_stride = p->sp.n_logprobs;
        r->lp_val = sy_calloc(max_tokens, sizeof *r->lp_val);
        r->lp_ntop = sy_calloc(max_tokens, sizeof *r->lp_ntop);
        r->lp_top =
            sy_calloc((size_t)max_tokens * (r->lp_stride ? r->lp_stride : 1), sizeof *r->lp_top);
        if (!r->lp_val || !r->lp_ntop || !r->lp_top)
            goto fail;
    }
    kvb_seq_init(&s->kv, r->salt, r->salt ? strlen(r->salt) : 0);
    kvb_seq_init(&r->pin, r->salt, r->salt ? strlen(r->salt) : 0);
    r->kv_remote_decode = p->kv_remote_decode;
    if (p->kv_remote_decode && !(r->kv_rid = sy_strdup(p->request_id ? p->request_id : "req")))
        goto fail_kv;
    const ecore_kv_remote_t *kr = p->kv_remote;
    if (kr && kr->host && kr->lease_id && kr->n_blocks) {
        r->kv_host = sy_strdup(kr->host);
        r->kv_lease = sy_strdup(kr->lease_id);
        r->kv_rblocks = sy_malloc((size_t)kr->n_blocks * sizeof(uint32_t));
        if (!r->kv_host || !r->kv_lease || !r->kv_rblocks)
            goto fail_kv;
        memcpy(r->kv_rblocks, kr->block_ids, (size_t)kr->n_blocks * sizeof(uint32_t));
        r->kv_n_rblocks = kr->n_blocks;
        r->kv_port = kr->port;
    }
    r->c_stop_tok = -1;
    return r;
fail:
    kvb_seq_init(&s->kv, NULL, 0);
    kvb_seq_init(&r->pin, NULL, 0);
fail_kv:
    req_free(r);
    return NULL;
}

/* ------------------------------------------------------------ loop-thread API */

int ecore_submit(ecore_t *c, ecore_req_t *r)
{
    pthread_mutex_lock(&c->mu);
    if (c->stop) {
        pthread_mutex_unlock(&c->mu);
        return ST_CLOSED;
    }
    r->submitted = true;
    atomic_fetch_add(&r->refs, 1); /* the core's reference */
    r->sub_next = NULL;
    if (c->sub_tail)
        c->sub_tail->sub_next = r;
    else
        c->sub_head = r;
    c->sub_tail = r;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return ST_OK;
}

void ecore_abort(ecore_t *c, ecore_req_t *r)
{
    if (!c || !r)
        return;
    if (atomic_exchange(&r->aborted, true))
        return;
    if (!r->submitted || r->final_delivered)
        return;
    pthread_mutex_lock(&c->mu);
    if (c->stop) { /* ecore_destroy cleans up */
        pthread_mutex_unlock(&c->mu);
        return;
    }
    atomic_fetch_add(&r->refs, 1); /* the abort queue's reference */
    r->abt_next = NULL;
    if (c->abt_tail)
        c->abt_tail->abt_next = r;
    else
        c->abt_head = r;
    c->abt_tail = r;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void ecore_abort_all(ecore_t *c)
{
    pthread_mutex_lock(&c->mu);
    c->abort_all = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void ecore_get_status(ecore_t *c, ecore_status_t *out)
{
    pthread_mutex_lock(&c->st_mu);
    *out = c->status;
    pthread_mutex_unlock(&c->st_mu);
}

static void buf_swap(sy_buf_t *a, sy_buf_t *b)
{
    sy_buf_t t = *a;
    *a = *b;
    *b = t;
}

/* Async callback on the loop thread: delivers every ready delta. */
static void on_ready(ev_loop_t *loop, void *udata)
{
    (void)loop;
    ecore_t *c = udata;
    ecore_req_t *batch = NULL, **tail = &batch;
    pthread_mutex_lock(&c->out_mu);
    for (ecore_req_t *r = c->ready_head; r; r = r->r_next) {
        r->in_ready = false;
        buf_swap(&r->pbuf, &r->lbuf);
        r->d_from = r->p_from;
        r->d_to = r->p_to;
        r->p_from = r->p_to;
        r->d_cached = r->p_cached;
        r->d_finished = r->p_finished;
        r->d_finish = r->p_finish;
        r->d_stop_str = r->p_stop_str;
        r->d_stop_tok = r->p_stop_tok;
        r->l_next = NULL;
        *tail = r;
        tail = &r->l_next;
    }
    c->ready_head = c->ready_tail = NULL;
    pthread_mutex_unlock(&c->out_mu);

    for (ecore_req_t *r = batch, *next; r; r = next) {
        next = r->l_next;
        bool news = r->d_to > r->d_from || r->lbuf.len || r->d_finished;
        if (news && !atomic_load(&r->aborted)) {
            ecore_delta_t d = {
                .text = r->lbuf.data ? r->lbuf.data : "",
                .text_len = r->lbuf.len,
                .token_ids = r->seq.tokens + r->seq.n_prompt + r->d_from,
                .n_tokens = r->d_to - r->d_from,
                .token_index = r->d_from,
                .logprobs = r->lp_val ? r->lp_val + r->d_from : NULL,
                .top_logprobs = r->lp_val ? r->lp_top + (size_t)r->d_from * r->lp_stride : NULL,
                .n_top = r->lp_val ? r->lp_ntop + r->d_from : NULL,
                .top_stride = r->lp_stride,
                .first = r->d_from == 0 && r->d_to > 0,
                .finished = r->d_finished,
                .finish = r->d_finished ? r->d_finish : SEQ_FINISH_NONE,
                .stop_str = r->d_finished ? r->d_stop_str : NULL,
                .stop_token = r->d_finished ? r->d_stop_tok : -1,
                .prompt_tokens = r->seq.n_prompt,
                .completion_tokens = r->d_to,
                .cached_tokens = r->d_cached,
                .kv_lease = r->d_finished && r->has_lease ? &r->lease_out : NULL,
            };
            c->on_output(r, &d, r->udata);
        }
        sy_buf_reset(&r->lbuf);
        if (r->d_finished) {
            r->final_delivered = true;
            ecore_req_release(r); /* the core's reference */
        }
    }
}

/* ------------------------------------------------------------ core thread: output */

static void touch(ecore_t *c, ecore_req_t *r)
{
    if (r->touched)
        return;
    r->touched = true;
    r->t_next = c->touched;
    c->touched = r;
}

static void active_link(ecore_t *c, ecore_req_t *r)
{
    r->act_prev = NULL;
    r->act_next = c->active;
    if (c->active)
        c->active->act_prev = r;
    c->active = r;
}

static void active_unlink(ecore_t *c, ecore_req_t *r)
{
    if (r->act_prev)
        r->act_prev->act_next = r->act_next;
    else if (c->active == r)
        c->active = r->act_next;
    if (r->act_next)
        r->act_next->act_prev = r->act_prev;
    r->act_prev = r->act_next = NULL;
}

/* The request leaves the engine: scheduler, executor, metrics; its final delta is queued. */
static void pin_unlink(ecore_t *c, ecore_req_t *r)
{
    if (!r->pinned)
        return;
    if (r->pin_prev)
        r->pin_prev->pin_next = r->pin_next;
    else
        c->pinned = r->pin_next;
    if (r->pin_next)
        r->pin_next->pin_prev = r->pin_prev;
    r->pin_prev = r->pin_next = NULL;
    r->pinned = false;
    kvb_seq_release(c->kv, &r->pin);
}

static void pin_link(ecore_t *c, ecore_req_t *r)
{
    r->pinned = true;
    r->pin_prev = NULL;
    r->pin_next = c->pinned;
    if (c->pinned)
        c->pinned->pin_prev = r;
    c->pinned = r;
}

/* Producer: moves the finished sequence's blocks under a lease for a decode engine. */
static void lease_blocks(ecore_t *c, ecore_req_t *r)
{
    uint32_t n = 0;
    const uint32_t *ids = kvb_seq_blocks(&r->seq.kv, &n);
    if (n == 0 || !(r->lease_blocks = sy_malloc((size_t)n * sizeof(uint32_t))))
        return;
    memcpy(r->lease_blocks, ids, (size_t)n * sizeof(uint32_t));
    int rc = kvx_lease_add(c->kvx, r->kv_rid, &r->seq.kv, r->lease_id);
    if (rc != ST_OK) {
        sy_warn("engine.kv_lease_failed", "status=%s blocks=%u", st_str(rc), n);
        sy_free(r->lease_blocks);
        r->lease_blocks = NULL;
        return;
    }
    const kvx_config_t *kc = kvx_get_config(c->kvx);
    r->has_lease = true;
    r->lease_out = (ecore_kv_lease_t){
        .engine_id = kc->engine_id,
        .lease_id = r->lease_id,
        .host = kc->host,
        .port = kvx_port(c->kvx),
        .block_ids = r->lease_blocks,
        .n_blocks = n,
    };
    mx_counter_inc(c->mx.pd_leased);
}

static void req_finish(ecore_t *c, ecore_req_t *r, seq_finish_t f, const char *stop_str,
                       int32_t stop_tok)
{
    sched_seq_t *s = &r->seq;
    pin_unlink(c, r);
    if (r->kv_remote_decode && c->kvx && kvx_is_producer(c->kvx) && s->state == SEQ_RUNNING &&
        (f == SEQ_FINISH_STOP || f == SEQ_FINISH_LENGTH))
        lease_blocks(c, r);
    if (s->state == SEQ_RUNNING && f != SEQ_FINISH_ABORT)
        sched_finish(c->sched, s, f);
    else
        sched_abort(c->sched, s); /* no-op when already FINISHED (failed by the scheduler) */
    s->finish = f;
    exec_seq_done(c->exec, s);
    active_unlink(c, r);
    r->core_done = true;
    r->c_finish = f;
    r->c_stop_str = stop_str;
    r->c_stop_tok = stop_tok;
    touch(c, r);

    uint64_t now = sy_mono_ns();
    uint32_t n_out = s->n_tokens - s->n_prompt;
    if (f < N_FINISH && c->mx.success[f])
        mx_counter_inc(c->mx.success[f]);
    mx_hist_observe(c->mx.e2e, (double)(now - s->arrival_ns) * 1e-9);
    mx_hist_observe(c->mx.req_prompt, s->n_prompt);
    mx_hist_observe(c->mx.req_gen, n_out);
    mx_hist_observe(c->mx.max_tokens, s->sp.max_tokens);
}

/* Moves text that no stop string can still claim from obuf to cbuf, and drops emitted bytes no
 * future match can reach. */
static int emit_held(ecore_req_t *r, bool finished)
{
    sy_buf_t *o = &r->obuf;
    size_t end = o->len;
    if (!finished) {
        end = o->len > r->holdback ? o->len - r->holdback : 0;
        while (end > r->emit_off && end < o->len && ((unsigned char)o->data[end] & 0xC0) == 0x80)
            end--; /* never split a character */
    }
    if (end > r->emit_off) {
        if (sy_buf_append(&r->cbuf, o->data + r->emit_off, end - r->emit_off) != ST_OK)
            return ST_NOMEM;
        r->emit_off = end;
    }
    size_t keep = r->max_stop - 1;
    if (r->emit_off > keep) {
        size_t drop = r->emit_off - keep;
        sy_buf_consume(o, drop);
        r->emit_off -= drop;
    }
    return ST_OK;
}

/* Searches the stop strings in the window that new text (from old_len on) can complete; on a
 * match truncates obuf and returns the matched string. */
static const char *match_stop(ecore_req_t *r, size_t old_len)
{
    sy_buf_t *o = &r->obuf;
    for (size_t i = 0; i < r->n_stop; i++) {
        size_t sl = r->stop_len[i];
        size_t from = old_len >= sl - 1 ? old_len - (sl - 1) : 0;
        if (o->len < from + sl)
            continue;
        const char *hit = memmem(o->data + from, o->len - from, r->stop[i], sl);
        if (!hit)
            continue;
        size_t cut = (size_t)(hit - o->data) + (r->include_stop ? sl : 0);
        SY_ASSERT(cut >= r->emit_off);
        if (cut < o->len) {
            o->len = cut;
            o->data[cut] = '\0';
        }
        return r->stop[i];
    }
    return NULL;
}

/* Stores the logprobs of output n_out - 1. ST_OK, or ST_INVAL when the request asked for
 * logprobs and the executor gave none (an executor bug or one without a distribution). */
static int store_logprobs(ecore_req_t *r, uint32_t n_out, const exec_sample_lp_t *lp)
{
    if (!r->lp_val)
        return ST_OK;
    if (!lp || !lp->valid || lp->n_top > r->lp_stride || (lp->n_top && !lp->top))
        return ST_INVAL;
    uint32_t i = n_out - 1;
    r->lp_val[i] = lp->logprob;
    r->lp_ntop[i] = lp->n_top;
    if (lp->n_top)
        memcpy(r->lp_top + (size_t)i * r->lp_stride, lp->top, lp->n_top * sizeof *lp->top);
    return ST_OK;
}

/* One sampled token for r: append, stop checks, detokenize, stop strings. */
static void out_token(ecore_t *c, ecore_req_t *r, int32_t tok, const exec_sample_lp_t *lp,
                      uint64_t now)
{
    sched_seq_t *s = &r->seq;
    SY_ASSERT(s->n_tokens < s->cap_tokens);
    s->tokens[s->n_tokens++] = tok;
    uint32_t n_out = s->n_tokens - s->n_prompt;
    if (store_logprobs(r, n_out, lp) != ST_OK) {
        sy_warn("engine.output_error", "status=%s what=no_logprobs", st_str(ST_INVAL));
        s->n_tokens--; /* the token is not delivered without the logprobs it was asked with */
        touch(c, r);
        req_finish(c, r, SEQ_FINISH_ERROR, NULL, -1);
        return;
    }
    if (n_out == 1) {
        s->first_token_ns = now;
        mx_hist_observe(c->mx.ttft, (double)(now - s->arrival_ns) * 1e-9);
        mx_counter_add(c->mx.prompt_tokens, s->n_prompt);
    } else {
        mx_hist_observe(c->mx.itl, (double)(now - s->last_token_ns) * 1e-9);
    }
    s->last_token_ns = now;
    touch(c, r);

    seq_finish_t fin = SEQ_FINISH_NONE;
    int32_t stop_tok = -1;
    const char *stop_str = NULL;
    if (n_out >= s->sp.min_tokens) {
        if (!s->sp.ignore_eos && tok == tok_eos(c->tok) && tok >= 0) {
            fin = SEQ_FINISH_STOP;
        } else {
            for (size_t i = 0; i < r->n_stop_ids; i++) {
                if (r->stop_ids[i] == tok) {
                    fin = SEQ_FINISH_STOP;
                    stop_tok = tok;
                    break;
                }
            }
        }
    }
    bool stop_terminated = fin == SEQ_FINISH_STOP;
    if (fin == SEQ_FINISH_NONE &&
        (n_out >= s->sp.max_tokens || (c->max_model_len && s->n_tokens >= c->max_model_len)))
        fin = SEQ_FINISH_LENGTH;

    sy_buf_t *dst = r->n_stop ? &r->obuf : &r->cbuf;
    size_t old_len = dst->len;
    int rc = ST_OK;
    if (!stop_terminated || r->include_stop)
        rc = tok_stream_push(c->tok, &r->ts, tok, r->skip_special, dst);
    if (rc == ST_OK && fin != SEQ_FINISH_NONE)
        rc = tok_stream_finish(c->tok, &r->ts, dst);
    if (rc == ST_OK && r->n_stop) {
        if (dst->len > old_len && n_out > s->sp.min_tokens &&
            (stop_str = match_stop(r, old_len)) != NULL) {
            fin = SEQ_FINISH_STOP;
            stop_tok = -1;
        }
        rc = emit_held(r, fin != SEQ_FINISH_NONE);
    }
    if (rc != ST_OK) {
        sy_warn("engine.output_error", "status=%s", st_str(rc));
        fin = SEQ_FINISH_ERROR;
        stop_str = NULL;
        stop_tok = -1;
    }
    if (fin != SEQ_FINISH_NONE)
        req_finish(c, r, fin, stop_str, stop_tok);
}

/* Publishes the deltas of every touched request and wakes the loop once. */
static void core_publish(ecore_t *c)
{
    if (!c->touched)
        return;
    pthread_mutex_lock(&c->out_mu);
    bool wake = c->ready_head == NULL;
    for (ecore_req_t *r = c->touched, *next; r; r = next) {
        next = r->t_next;
        r->touched = false;
        r->t_next = NULL;
        if (r->cbuf.len) {
            if (r->pbuf.len == 0) {
                buf_swap(&r->cbuf, &r->pbuf);
            } else if (sy_buf_append(&r->pbuf, r->cbuf.data, r->cbuf.len) != ST_OK) {
                sy_warn("engine.output_dropped", "bytes=%zu", r->cbuf.len);
            }
            sy_buf_reset(&r->cbuf);
        }
        r->p_to = r->seq.n_tokens - r->seq.n_prompt;
        r->p_cached = r->seq.n_cached;
        if (r->core_done) {
            r->p_finished = true;
            r->p_finish = r->c_finish;
            r->p_stop_str = r->c_stop_str;
            r->p_stop_tok = r->c_stop_tok;
        }
        if (!r->in_ready) {
            r->in_ready = true;
            r->r_next = NULL;
            if (c->ready_tail)
                c->ready_tail->r_next = r;
            else
                c->ready_head = r;
            c->ready_tail = r;
        }
    }
    c->touched = NULL;
    pthread_mutex_unlock(&c->out_mu);
    if (wake)
        ev_async_send(c->async);
}

/* ------------------------------------------------------------ core thread: steps */

/* Tells the producer to drop a lease this engine will not pull. */
static void release_remote(ecore_t *c, ecore_req_t *r)
{
    kvx_pull_spec_t spec = {.host = r->kv_host, .port = r->kv_port, .lease_id = r->kv_lease};
    if (!kvx_job_submit(c->kvx, &spec))
        sy_warn("engine.kv_release_not_sent", "lease=%s", r->kv_lease);
}

/* Consumer: reserves the prompt's full blocks it does not hold and queues their pull. Returns
 * true when the request now waits for the pull; false when it goes to the scheduler now (the
 * blocks are all cached here - pinned -, or the pull cannot be made: recompute). */
static bool start_pull(ecore_t *c, ecore_req_t *r)
{
    sched_seq_t *s = &r->seq;
    uint32_t bs = kvb_block_size(c->kv);
    uint32_t want = (s->n_prompt - 1) / bs; /* the full blocks a prefix hit may cover */
    uint32_t have = kvb_seq_match_prefix(c->kv, &r->pin, s->tokens, s->n_prompt) / bs;
    const char *why = NULL;
    if (want == 0 || have >= want) {
        pin_link(c, r);
        mx_counter_inc(c->mx.pd_cached);
        release_remote(c, r);
        return false;
    }
    if (r->kv_n_rblocks < want)
        why = "the producer sent fewer blocks than the prompt has";
    else if (kvb_seq_reserve(c->kv, &r->pin, want * bs) != ST_OK)
        why = "no free blocks to pull into";
    kvx_job_t *job = NULL;
    if (!why) {
        uint32_t n = 0;
        const uint32_t *local = kvb_seq_blocks(&r->pin, &n);
        kvx_pull_spec_t spec = {
            .host = r->kv_host,
            .port = r->kv_port,
            .lease_id = r->kv_lease,
            .remote_ids = r->kv_rblocks + have,
            .local_ids = local + have,
            .n_blocks = want - have,
            .udata = r,
        };
        atomic_fetch_add(&r->refs, 1); /* the job's reference */
        if (!(job = kvx_job_submit(c->kvx, &spec))) {
            atomic_fetch_sub(&r->refs, 1);
            why = "out of memory";
        }
    }
    if (why) {
        sy_warn("engine.kv_pull_skipped", "lease=%s why=\"%s\"", r->kv_lease, why);
        kvb_seq_release(c->kv, &r->pin);
        mx_counter_inc(c->mx.pd_recomputed);
        release_remote(c, r);
        return false;
    }
    r->pulling = true;
    r->kv_pull_tokens = want * bs;
    s->state = SEQ_FINISHED; /* in no scheduler list until the pull ends */
    c->n_pulling++;
    return true;
}

static void lease_free_cb(void *ud, kvb_seq_t *t)
{
    ecore_t *c = ud;
    kvb_seq_release(c->kv, t);
}

/* A finished pull: the request goes to the scheduler, with its prompt blocks cached (pulled)
 * or not (recomputed); an aborted one only gives its blocks back. */
static void pull_done(ecore_t *c, kvx_job_t *j, bool shutdown)
{
    ecore_req_t *r = kvx_job_udata(j);
    kvx_job_result_t res;
    kvx_job_result(j, &res);
    r->pulling = false;
    c->n_pulling--;
    if (r->core_done || shutdown) {
        kvb_seq_release(c->kv, &r->pin);
    } else if (res.status == ST_OK) {
        kvb_seq_commit(c->kv, &r->pin, r->seq.tokens, r->kv_pull_tokens);
        pin_link(c, r);
        mx_counter_inc(c->mx.pd_pulled);
        sched_add(c->sched, &r->seq);
    } else {
        kvb_seq_release(c->kv, &r->pin);
        mx_counter_inc(c->mx.pd_recomputed);
        sched_add(c->sched, &r->seq);
    }
    kvx_job_free(j);
    ecore_req_release(r); /* the job's reference */
}

/* Finished pulls, released and expired leases. */
static void core_kvx_poll(ecore_t *c)
{
    for (kvx_job_t *j; (j = kvx_job_take_done(c->kvx)) != NULL;)
        pull_done(c, j, false);
    kvx_lease_collect(c->kvx, sy_mono_ns(), false, lease_free_cb, c);
}

/* Releases the pins of sequences the scheduler admitted (they hold their own references). */
static void core_unpin_admitted(ecore_t *c)
{
    for (ecore_req_t *r = c->pinned, *next; r; r = next) {
        next = r->pin_next;
        if (r->seq.state != SEQ_WAITING)
            pin_unlink(c, r);
    }
}

static void kvx_wake(void *ud)
{
    ecore_t *c = ud;
    pthread_mutex_lock(&c->mu);
    c->kvx_pending = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void core_take_submits(ecore_t *c, ecore_req_t *subs)
{
    for (ecore_req_t *r = subs, *next; r; r = next) {
        next = r->sub_next;
        r->sub_next = NULL;
        if (atomic_load(&r->aborted)) {
            /* aborted before the core saw it: straight to its (hidden) final delta */
            r->seq.state = SEQ_FINISHED;
            req_finish(c, r, SEQ_FINISH_ABORT, NULL, -1);
            continue;
        }
        active_link(c, r);
        if (r->kv_host && c->kvx && kvx_is_consumer(c->kvx) && start_pull(c, r))
            continue;
        sched_add(c->sched, &r->seq);
    }
}

static void core_take_aborts(ecore_t *c, ecore_req_t *abts)
{
    for (ecore_req_t *r = abts, *next; r; r = next) {
        next = r->abt_next;
        r->abt_next = NULL;
        if (!r->core_done)
            req_finish(c, r, SEQ_FINISH_ABORT, NULL, -1);
        ecore_req_release(r); /* the abort queue's reference */
    }
}

static void core_abort_everything(ecore_t *c)
{
    while (c->active)
        req_finish(c, c->active, SEQ_FINISH_ABORT, NULL, -1);
}

/* Runs one scheduler step. Returns false when there was nothing to run. */
static bool core_step(ecore_t *c)
{
    sched_plan_t *plan = NULL;
    int rc = sched_plan(c->sched, &plan);
    if (c->pinned)
        core_unpin_admitted(c);
    for (sched_seq_t *s; (s = sched_take_failed(c->sched)) != NULL;)
        req_finish(c, s->owner, SEQ_FINISH_ERROR, NULL, -1);
    if (rc != ST_OK)
        return false;

    uint64_t t0 = sy_mono_ns();
    uint32_t n_tokens = 0;
    for (uint32_t i = 0; i < plan->n_items; i++) {
        sched_seq_t *s = plan->items[i].seq;
        n_tokens += plan->items[i].n_tokens;
        if (s->scheduled_ns == 0) {
            s->scheduled_ns = t0;
            mx_hist_observe(c->mx.queue_time, (double)(t0 - s->arrival_ns) * 1e-9);
        }
    }
    uint32_t n_sampled = 0;
    rc = exec_execute(c->exec, plan, c->sampled, c->lps, &n_sampled);
    if (rc != ST_OK) {
        sy_error("engine.exec_failed", "status=%s items=%u", st_str(rc), plan->n_items);
        for (uint32_t i = 0; i < plan->n_items; i++)
            req_finish(c, plan->items[i].seq->owner, SEQ_FINISH_ERROR, NULL, -1);
        return true;
    }
    sched_step_done(c->sched, plan);
    uint64_t now = sy_mono_ns();
    mx_hist_observe(c->mx.iter_tokens, n_tokens);
    uint32_t k = 0;
    for (uint32_t i = 0; i < plan->n_items; i++) {
        if (plan->items[i].sample) {
            SY_ASSERT(k < n_sampled);
            out_token(c, plan->items[i].seq->owner, c->sampled[k], &c->lps[k], now);
            k++;
        }
    }
    if (k)
        mx_counter_add(c->mx.gen_tokens, k);
    c->steps++;
    return true;
}

static void *core_main(void *arg)
{
    ecore_t *c = arg;
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        ecore_req_t *subs = c->sub_head, *abts = c->abt_head;
        bool abort_all = c->abort_all;
        bool kvx_news = c->kvx_pending;
        c->sub_head = c->sub_tail = c->abt_head = c->abt_tail = NULL;
        c->abort_all = false;
        c->kvx_pending = false;
        bool busy = sched_num_running(c->sched) || sched_num_waiting(c->sched);
        if (!subs && !abts && !abort_all && !busy && !kvx_news) {
            pthread_mutex_unlock(&c->mu);
            uint64_t expiry = 0;
            if (c->kvx) {
                core_kvx_poll(c);
                expiry = kvx_lease_next_expiry(c->kvx);
            }
            core_update_stats(c); /* idle gauges */
            pthread_mutex_lock(&c->mu);
            while (!c->stop && !c->sub_head && !c->abt_head && !c->abort_all && !c->kvx_pending) {
                if (!expiry) {
                    pthread_cond_wait(&c->cv, &c->mu);
                    continue;
                }
                /* a lease expires: wake then (CLOCK_REALTIME deadline from the monotonic gap) */
                uint64_t now = sy_mono_ns();
                if (now >= expiry)
                    break;
                uint64_t gap = expiry - now + 1000000;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += (time_t)(gap / 1000000000ull);
                ts.tv_nsec += (long)(gap % 1000000000ull);
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&c->cv, &c->mu, &ts);
                if (sy_mono_ns() >= expiry)
                    break;
            }
            continue;
        }
        pthread_mutex_unlock(&c->mu);

        if (c->kvx)
            core_kvx_poll(c);
        core_take_submits(c, subs);
        core_take_aborts(c, abts);
        if (abort_all)
            core_abort_everything(c);
        bool ran = core_step(c);
        core_update_stats(c); /* first, so a client that sees a delta sees its metrics too */
        core_publish(c);

        pthread_mutex_lock(&c->mu);
        if (!ran && busy && !c->stop && !c->sub_head && !c->abt_head) {
            /* work queued but nothing schedulable (should not happen): do not spin */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 1000000;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* ------------------------------------------------------------ lifecycle */

ecore_t *ecore_create(const ecore_config_t *cfg, int *status)
{
    int rc = ST_INVAL;
    ecore_t *c = NULL;
    if (!cfg || !cfg->tok || !cfg->exec || !cfg->loop || !cfg->on_output ||
        cfg->sched.max_num_seqs == 0)
        goto fail;
    rc = ST_NOMEM;
    c = sy_calloc(1, sizeof *c);
    if (!c)
        goto fail;
    c->tok = cfg->tok;
    c->exec = cfg->exec;
    c->loop = cfg->loop;
    c->on_output = cfg->on_output;
    c->kvx = cfg->kvx;
    c->max_model_len = cfg->sched.max_model_len;
    c->max_num_seqs = cfg->sched.max_num_seqs;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->out_mu, NULL);
    pthread_mutex_init(&c->st_mu, NULL);
    pthread_cond_init(&c->cv, NULL);

    c->kv = kvb_create(&cfg->kv, cfg->events);
    if (!c->kv) {
        rc = ST_INVAL;
        goto fail;
    }
    c->sched = sched_create(&cfg->sched, c->kv);
    c->sampled = sy_calloc(c->max_num_seqs, sizeof(int32_t));
    c->lps = sy_calloc(c->max_num_seqs, sizeof *c->lps);
    if (!c->sched || !c->sampled || !c->lps)
        goto fail;
    mx_registry_t *reg = cfg->metrics;
    if (!reg && !(reg = c->own_reg = mx_registry_create()))
        goto fail;
    if ((rc = metrics_init(c, reg, cfg)) != ST_OK)
        goto fail;
    rc = ST_NOMEM;
    c->async = ev_async_create(c->loop, on_ready, c);
    if (!c->async)
        goto fail;
    core_update_stats(c);
    if (c->kvx)
        kvx_set_wake(c->kvx, kvx_wake, c);
    if ((rc = sy_thread_start(&c->thread, core_main, c)) != ST_OK)
        goto fail;
    c->thread_started = true;
    if (status)
        *status = ST_OK;
    return c;
fail:
    if (status)
        *status = rc;
    if (!c) {
        exec_destroy(cfg ? cfg->exec : NULL);
        kvx_destroy(cfg ? cfg->kvx : NULL);
        return NULL;
    }
    ecore_destroy(c);
    return NULL;
}

void ecore_destroy(ecore_t *c)
{
    if (!c)
        return;
    if (c->thread_started) {
        pthread_mutex_lock(&c->mu);
        c->stop = true;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
    }
    /* the connector's threads stop first (they read and write the pool); pulls they did not
     * finish come back as failed jobs, leases give their blocks back */
    if (c->kvx) {
        kvx_stop(c->kvx);
        kvx_set_wake(c->kvx, NULL, NULL);
        for (kvx_job_t *j; (j = kvx_job_take_done(c->kvx)) != NULL;)
            pull_done(c, j, true);
        if (c->kv)
            kvx_lease_collect(c->kvx, sy_mono_ns(), true, lease_free_cb, c);
    }
    while (c->pinned)
        pin_unlink(c, c->pinned);
    /* single-threaded from here on; no on_output calls */
    for (ecore_req_t *r = c->ready_head, *next; r; r = next) {
        next = r->r_next;
        r->in_ready = false;
        if (r->p_finished)
            ecore_req_release(r); /* final delta never delivered: the core's reference */
    }
    c->ready_head = c->ready_tail = NULL;
    for (ecore_req_t *r = c->sub_head, *next; r; r = next) {
        next = r->sub_next;
        ecore_req_release(r);
    }
    c->sub_head = c->sub_tail = NULL;
    while (c->active) {
        ecore_req_t *r = c->active;
        if (c->sched)
            sched_abort(c->sched, &r->seq);
        exec_seq_done(c->exec, &r->seq);
        active_unlink(c, r);
        ecore_req_release(r);
    }
    for (ecore_req_t *r = c->abt_head, *next; r; r = next) {
        next = r->abt_next;
        ecore_req_release(r);
    }
    c->abt_head = c->abt_tail = NULL;
    ev_async_destroy(c->async);
    kvx_destroy(c->kvx);
    sched_destroy(c->sched);
    kvb_destroy(c->kv);
    exec_destroy(c->exec);
    sy_free(c->sampled);
    sy_free(c->lps);
    mx_registry_destroy(c->own_reg);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->st_mu);
    pthread_mutex_destroy(&c->out_mu);
    pthread_mutex_destroy(&c->mu);
    sy_free(c);
}
