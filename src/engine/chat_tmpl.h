/*
 * chat_tmpl.h - chat templates: render an OpenAI messages list into the prompt text.
 *
 * Built-in named templates (the GGUF issue adds recognition from stored Jinja templates):
 *   "chatml" (default for the sim engine):
 *       <|im_start|>{role}\n{content}<|im_end|>\n ... [<|im_start|>assistant\n]
 *   "llama2", "llama3", "mistral", "zephyr", "phi3", "gemma" as their model families format them.
 * Does not: run Jinja.
 * Thread-safety: templates are immutable; functions are reentrant.
 */
#ifndef SY_CHAT_TMPL_H
#define SY_CHAT_TMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"

typedef struct chat_msg {
    const char *role; /* "system", "user", "assistant", "tool", ... (borrowed) */
    const char *content;
    size_t content_len;
} chat_msg_t;

typedef struct chat_tmpl chat_tmpl_t;

/* Looks up a built-in template by name; NULL if unknown. Returned pointer is static. */
const chat_tmpl_t *chat_tmpl_find(const char *name);
const char *chat_tmpl_name(const chat_tmpl_t *t);
/* Comma-separated list of built-in names (static string), for --help and error messages. */
const char *chat_tmpl_names(void);

/* Recognises the family of a Jinja chat template as stored in a GGUF's tokenizer.chat_template
 * (jinja[0..len), borrowed) by its markers: chatml (<|im_start|>), llama3 (<|start_header_id|>),
 * gemma (<start_of_turn>), phi3 (<|user|> with <|end|>), zephyr (<|user|> with </s>), llama2
 * ([INST] with <<SYS>>) and mistral ([INST] without). Returns the built-in template, or NULL when
 * no family matches (the caller then needs --chat-template). */
const chat_tmpl_t *chat_tmpl_detect(const char *jinja, size_t len);

/* Renders msgs into out (appended). add_generation_prompt opens an assistant turn.
 * ST_OK, ST_INVAL (e.g. a role the template cannot express; message in *err, static), ST_NOMEM. */
int chat_tmpl_render(const chat_tmpl_t *t, const chat_msg_t *msgs, size_t n,
                     bool add_generation_prompt, sy_buf_t *out, const char **err);

#endif
