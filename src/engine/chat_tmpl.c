/*
 * chat_tmpl.c - built-in chat templates, as data. Each family is one table row that reproduces
 * the output of the family's official Jinja template (HF tokenizer_config.json chat_template):
 *
 *   chatml   Qwen/OpenHermes style: <|im_start|>{role}\n{content}<|im_end|>\n, any role.
 *   llama2   meta-llama/Llama-2-*-chat-hf: <s>[INST] {user} [/INST] {assistant} </s>; the system
 *            prompt goes into the first user turn as <<SYS>>\n{sys}\n<</SYS>>\n\n and the whole
 *            turn is strip()ped; roles must alternate user/assistant; other roles render nothing.
 *   llama3   meta-llama/Meta-Llama-3-8B-Instruct: <|begin_of_text|> before the first message,
 *            <|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>, any role.
 *   mistral  mistralai/Mistral-7B-Instruct-v0.2 (2024 template): <s> [INST] {user} [/INST]
 *            {assistant}</s>; the system prompt is prepended to the first user turn with "\n\n";
 *            alternation required, other roles are an error.
 *   zephyr   HuggingFaceH4/zephyr-7b-beta: <|{role}|>\n{content}</s>\n for system/user/assistant
 *            (others skipped), generation prompt <|assistant|>\n after the last message.
 *   phi3     microsoft/Phi-3-mini-4k-instruct: <|{role}|>\n{content}<|end|>\n for
 *            system/user/assistant (others skipped); generation prompt <|assistant|>\n, or
 *            <|endoftext|> when there is none.
 *   gemma    google/gemma-3-*-it: <bos><start_of_turn>{user|model}\n{content|trim}<end_of_turn>\n;
 *            no system role: the system prompt + "\n\n" prefixes the first user turn.
 *
 * "trim"/"strip" remove ASCII whitespace (Python's str.strip also removes Unicode spaces; such
 * content is rare at the edges of a chat message).
 * Does not: run Jinja; tool calls and multimodal content parts are the caller's problem.
 * Thread-safety: templates are immutable static data; chat_tmpl_render is reentrant.
 */
#include "engine/chat_tmpl.h"

#include <string.h>

#include "common/status.h"

typedef enum role_policy {
    ROLE_GENERIC, /* unknown roles render with role_pre + role + role_post */
    ROLE_SKIP,    /* unknown roles render nothing */
    ROLE_ERROR,   /* unknown roles are an error */
} role_policy_t;

typedef struct role_fmt {
    const char *role;
    const char *prefix;
    const char *suffix;
} role_fmt_t;

struct chat_tmpl {
    const char *name;
    const char *bos;      /* emitted at the start of the text ("" = none) */
    bool bos_needs_msg;   /* emit bos only when at least one message is rendered */
    const char *role_pre; /* generic header: role_pre + role + role_post */
    const char *role_post;
    const char *suffix;    /* generic suffix after the content */
    role_fmt_t roles[3];   /* per-role overrides (role NULL = unused) */
    role_policy_t unknown; /* roles not in roles[] */
    bool trim;             /* trim each message's content */
    bool fold_system;      /* a leading system message is folded into the first turn */
    const char *fold_pre;  /* first turn content = fold_pre + system + fold_post + content */
    const char *fold_post;
    bool fold_trim_all;  /* trim the folded turn as a whole (llama2) instead of the content */
    bool alternate;      /* after the folded system message: user, assistant, user, ... */
    const char *gen;     /* generation prompt */
    bool gen_needs_msg;  /* generation prompt only after at least one message (zephyr) */
    const char *no_gen;  /* appended when add_generation_prompt is false */
    const char *err_alt; /* message for an alternation violation */
    const char *err_role;
};

static const char k_alt_err[] =
    "Conversation roles must alternate user/assistant/user/assistant/...";

static const chat_tmpl_t k_templates[] = {
    {
        .name = "chatml",
        .bos = "",
        .role_pre = "<|im_start|>",
        .role_post = "\n",
        .suffix = "<|im_end|>\n",
        .unknown = ROLE_GENERIC,
        .gen = "<|im_start|>assistant\n",
    },
    {
        .name = "llama2",
        .bos = "",
        .roles = {{"user", "<s>[INST] ", " [/INST]"}, {"assistant", " ", " </s>"}},
        .unknown = ROLE_SKIP,
        .trim = true,
        .fold_system = true,
        .fold_pre = "<<SYS>>\n",
        .fold_post = "\n<</SYS>>\n\n",
        .fold_trim_all = true,
        .alternate = true,
        .gen = "",
        .err_alt = k_alt_err,
    },
    {
        .name = "llama3",
        .bos = "<|begin_of_text|>",
        .bos_needs_msg = true,
        .role_pre = "<|start_header_id|>",
        .role_post = "<|end_header_id|>\n\n",
        .suffix = "<|eot_id|>",
        .unknown = ROLE_GENERIC,
        .trim = true,
        .gen = "<|start_header_id|>assistant<|end_header_id|>\n\n",
    },
    {
        .name = "mistral",
        .bos = "<s>",
        .roles = {{"user", " [INST] ", " [/INST]"}, {"assistant", " ", "</s>"}},
        .unknown = ROLE_ERROR,
        .fold_system = true,
        .fold_pre = "",
        .fold_post = "\n\n",
        .alternate = true,
        .gen = "",
        .err_alt = "After the optional system message, conversation roles must alternate "
                   "user/assistant/user/assistant/...",
        .err_role = "Only user and assistant roles are supported, with the exception of an "
                    "initial optional system message!",
    },
    {
        .name = "zephyr",
        .bos = "",
        .roles = {{"user", "<|user|>\n", "</s>\n"},
                  {"system", "<|system|>\n", "</s>\n"},
                  {"assistant", "<|assistant|>\n", "</s>\n"}},
        .unknown = ROLE_SKIP,
        .gen = "<|assistant|>\n",
        .gen_needs_msg = true,
    },
    {
        .name = "phi3",
        .bos = "",
        .roles = {{"system", "<|system|>\n", "<|end|>\n"},
                  {"user", "<|user|>\n", "<|end|>\n"},
                  {"assistant", "<|assistant|>\n", "<|end|>\n"}},
        .unknown = ROLE_SKIP,
        .gen = "<|assistant|>\n",
        .no_gen = "<|endoftext|>",
    },
    {
        .name = "gemma",
        .bos = "<bos>",
        .role_pre = "<start_of_turn>",
        .role_post = "\n",
        .suffix = "<end_of_turn>\n",
        .roles = {{"assistant", "<start_of_turn>model\n", "<end_of_turn>\n"}},
        .unknown = ROLE_GENERIC,
        .trim = true,
        .fold_system = true,
        .fold_pre = "",
        .fold_post = "\n\n",
        .alternate = true,
        .gen = "<start_of_turn>model\n",
        .err_alt = k_alt_err,
    },
};

#define N_TEMPLATES (sizeof k_templates / sizeof k_templates[0])

const chat_tmpl_t *chat_tmpl_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < N_TEMPLATES; i++) {
        if (strcmp(k_templates[i].name, name) == 0)
            return &k_templates[i];
    }
    return NULL;
}

static bool has(const char *s, size_t len, const char *needle)
{
    return memmem(s, len, needle, strlen(needle)) != NULL;
}

const chat_tmpl_t *chat_tmpl_detect(const char *jinja, size_t len)
{
    if (!jinja || len == 0)
        return NULL;
    const char *name = NULL;
    if (has(jinja, len, "<|im_start|>"))
        name = "chatml";
    else if (has(jinja, len, "<|start_header_id|>"))
        name = "llama3";
    else if (has(jinja, len, "<start_of_turn>"))
        name = "gemma";
    else if (has(jinja, len, "<|user|>") && has(jinja, len, "<|end|>"))
        name = "phi3";
    else if (has(jinja, len, "<|user|>") && has(jinja, len, "</s>"))
        name = "zephyr";
    else if (has(jinja, len, "[INST]") && has(jinja, len, "<<SYS>>"))
        name = "llama2";
    else if (has(jinja, len, "[INST]"))
        name = "mistral";
    return chat_tmpl_find(name);
}

const char *chat_tmpl_name(const chat_tmpl_t *t)
{
    return t->name;
}

const char *chat_tmpl_names(void)
{
    return "chatml,llama2,llama3,mistral,zephyr,phi3,gemma";
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' ||
           (c >= 0x1c && c <= 0x1f);
}

/* Trims ASCII whitespace from both ends of s[0..*len); returns the new start. */
static const char *trim(const char *s, size_t *len)
{
    size_t a = 0, b = *len;
    while (a < b && is_ws(s[a]))
        a++;
    while (b > a && is_ws(s[b - 1]))
        b--;
    *len = b - a;
    return s + a;
}

static bool role_is(const chat_msg_t *m, const char *role)
{
    return m->role && strcmp(m->role, role) == 0;
}

/* Appends the content of message m (folding sys into it when sys != NULL). */
static int append_content(const chat_tmpl_t *t, const chat_msg_t *m, const chat_msg_t *sys,
                          sy_buf_t *out)
{
    const char *c = m->content ? m->content : "";
    size_t clen = m->content ? m->content_len : 0;
    if (!sys) {
        if (t->trim)
            c = trim(c, &clen);
        return sy_buf_append(out, c, clen);
    }
    const char *sc = sys->content ? sys->content : "";
    size_t slen = sys->content ? sys->content_len : 0;
    if (!t->fold_trim_all) {
        if (t->trim)
            c = trim(c, &clen);
        int rc = sy_buf_append_str(out, t->fold_pre);
        rc = rc ? rc : sy_buf_append(out, sc, slen);
        rc = rc ? rc : sy_buf_append_str(out, t->fold_post);
        return rc ? rc : sy_buf_append(out, c, clen);
    }
    /* build the whole turn, then strip it in place */
    size_t start = out->len;
    int rc = sy_buf_append_str(out, t->fold_pre);
    rc = rc ? rc : sy_buf_append(out, sc, slen);
    rc = rc ? rc : sy_buf_append_str(out, t->fold_post);
    rc = rc ? rc : sy_buf_append(out, c, clen);
    if (rc)
        return rc;
    size_t n = out->len - start;
    const char *p = trim(out->data + start, &n);
    memmove(out->data + start, p, n);
    out->len = start + n;
    out->data[out->len] = '\0';
    return ST_OK;
}

int chat_tmpl_render(const chat_tmpl_t *t, const chat_msg_t *msgs, size_t n,
                     bool add_generation_prompt, sy_buf_t *out, const char **err)
{
    static const char k_no_role[] = "message without a role";
    size_t start_len = out->len;
    size_t first = 0;
    const chat_msg_t *sys = NULL;
    int rc = ST_OK;
    if (err)
        *err = NULL;
    if (t->fold_system && n > 0 && role_is(&msgs[0], "system")) {
        sys = &msgs[0];
        first = 1;
    }
    if (!t->bos_needs_msg)
        rc = sy_buf_append_str(out, t->bos);
    for (size_t i = first; i < n && rc == ST_OK; i++) {
        const chat_msg_t *m = &msgs[i];
        size_t idx = i - first;
        if (!m->role) {
            if (err)
                *err = k_no_role;
            rc = ST_INVAL;
            break;
        }
        if (t->alternate && role_is(m, "user") != (idx % 2 == 0)) {
            if (err)
                *err = t->err_alt;
            rc = ST_INVAL;
            break;
        }
        const role_fmt_t *rf = NULL;
        for (size_t k = 0; k < 3; k++) {
            if (t->roles[k].role && strcmp(t->roles[k].role, m->role) == 0)
                rf = &t->roles[k];
        }
        if (!rf && t->unknown == ROLE_SKIP)
            continue;
        if (!rf && t->unknown == ROLE_ERROR) {
            if (err)
                *err = t->err_role;
            rc = ST_INVAL;
            break;
        }
        if (idx == 0 && t->bos_needs_msg)
            rc = sy_buf_append_str(out, t->bos);
        if (rf) {
            rc = rc ? rc : sy_buf_append_str(out, rf->prefix);
        } else {
            rc = rc ? rc : sy_buf_append_str(out, t->role_pre);
            rc = rc ? rc : sy_buf_append_str(out, m->role);
            rc = rc ? rc : sy_buf_append_str(out, t->role_post);
        }
        rc = rc ? rc : append_content(t, m, idx == 0 ? sys : NULL, out);
        rc = rc ? rc : sy_buf_append_str(out, rf ? rf->suffix : t->suffix);
    }
    if (rc == ST_OK) {
        if (add_generation_prompt) {
            if (!t->gen_needs_msg || n > 0)
                rc = sy_buf_append_str(out, t->gen);
        } else if (t->no_gen) {
            rc = sy_buf_append_str(out, t->no_gen);
        }
    }
    if (rc != ST_OK) {
        out->len = start_len;
        if (out->data)
            out->data[start_len] = '\0';
        if (rc == ST_NOMEM && err)
            *err = "out of memory";
    }
    return rc;
}
