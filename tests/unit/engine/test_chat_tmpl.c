/*
 * test_chat_tmpl.c - exact renderings of every built-in chat template for a
 * system + user + assistant + user conversation, plus trimming, generation-prompt and
 * role-validation behaviour.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/status.h"
#include "engine/chat_tmpl.h"

#define MSG(r, c)                                                                                  \
    {                                                                                              \
        r, c, sizeof(c) - 1                                                                        \
    }

static const chat_msg_t k_conv[] = {
    MSG("system", "You are helpful."),
    MSG("user", "Hi"),
    MSG("assistant", "Hello!"),
    MSG("user", "How are you?"),
};

static void expect_render(const char *name, const chat_msg_t *msgs, size_t n, bool gen,
                          const char *want)
{
    const chat_tmpl_t *t = chat_tmpl_find(name);
    assert_non_null(t);
    assert_string_equal(chat_tmpl_name(t), name);
    sy_buf_t out = SY_BUF_INIT;
    const char *err = NULL;
    assert_int_equal(chat_tmpl_render(t, msgs, n, gen, &out, &err), ST_OK);
    assert_null(err);
    assert_string_equal(out.data ? out.data : "", want);
    sy_buf_deinit(&out);
}

static void expect_error(const char *name, const chat_msg_t *msgs, size_t n)
{
    const chat_tmpl_t *t = chat_tmpl_find(name);
    assert_non_null(t);
    sy_buf_t out = SY_BUF_INIT;
    assert_int_equal(sy_buf_append_str(&out, "keep"), ST_OK);
    const char *err = NULL;
    assert_int_equal(chat_tmpl_render(t, msgs, n, true, &out, &err), ST_INVAL);
    assert_non_null(err);
    assert_string_equal(out.data, "keep"); /* nothing appended on error */
    sy_buf_deinit(&out);
}

static void test_chatml(void **state)
{
    expect_render("chatml", k_conv, 4, true,
                  "<|im_start|>system\nYou are helpful.<|im_end|>\n"
                  "<|im_start|>user\nHi<|im_end|>\n"
                  "<|im_start|>assistant\nHello!<|im_end|>\n"
                  "<|im_start|>user\nHow are you?<|im_end|>\n"
                  "<|im_start|>assistant\n");
    expect_render("chatml", k_conv + 1, 1, false, "<|im_start|>user\nHi<|im_end|>\n");
}

static void test_llama2(void **state)
{
    expect_render("llama2", k_conv, 4, true,
                  "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi [/INST] Hello! </s>"
                  "<s>[INST] How are you? [/INST]");
    expect_render("llama2", k_conv + 1, 3, true,
                  "<s>[INST] Hi [/INST] Hello! </s><s>[INST] How are you? [/INST]");
    /* strip() of the user turn */
    const chat_msg_t padded[] = {MSG("user", "  spaced  \n")};
    expect_render("llama2", padded, 1, true, "<s>[INST] spaced [/INST]");
    const chat_msg_t bad[] = {MSG("user", "a"), MSG("user", "b")};
    expect_error("llama2", bad, 2);
}

static void test_llama3(void **state)
{
    expect_render("llama3", k_conv, 4, true,
                  "<|begin_of_text|>"
                  "<|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
    const chat_msg_t padded[] = {MSG("user", "\n  x y \t")};
    expect_render("llama3", padded, 1, false,
                  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nx y<|eot_id|>");
}

static void test_mistral(void **state)
{
    expect_render(
        "mistral", k_conv, 4, true,
        "<s> [INST] You are helpful.\n\nHi [/INST] Hello!</s> [INST] How are you? [/INST]");
    expect_render("mistral", k_conv + 1, 1, true, "<s> [INST] Hi [/INST]");
    const chat_msg_t tool[] = {MSG("user", "a"), MSG("tool", "b")};
    expect_error("mistral", tool, 2);
    const chat_msg_t alt[] = {MSG("assistant", "a")};
    expect_error("mistral", alt, 1);
}

static void test_zephyr(void **state)
{
    expect_render("zephyr", k_conv, 4, true,
                  "<|system|>\nYou are helpful.</s>\n"
                  "<|user|>\nHi</s>\n"
                  "<|assistant|>\nHello!</s>\n"
                  "<|user|>\nHow are you?</s>\n"
                  "<|assistant|>\n");
    expect_render("zephyr", k_conv, 2, false,
                  "<|system|>\nYou are helpful.</s>\n<|user|>\nHi</s>\n");
}

static void test_phi3(void **state)
{
    expect_render("phi3", k_conv, 4, true,
                  "<|system|>\nYou are helpful.<|end|>\n"
                  "<|user|>\nHi<|end|>\n"
                  "<|assistant|>\nHello!<|end|>\n"
                  "<|user|>\nHow are you?<|end|>\n"
                  "<|assistant|>\n");
    expect_render("phi3", k_conv + 1, 1, false, "<|user|>\nHi<|end|>\n<|endoftext|>");
}

static void test_gemma(void **state)
{
    expect_render("gemma", k_conv, 4, true,
                  "<bos><start_of_turn>user\nYou are helpful.\n\nHi<end_of_turn>\n"
                  "<start_of_turn>model\nHello!<end_of_turn>\n"
                  "<start_of_turn>user\nHow are you?<end_of_turn>\n"
                  "<start_of_turn>model\n");
    const chat_msg_t bad[] = {MSG("assistant", "a")};
    expect_error("gemma", bad, 1);
}

static void test_lookup(void **state)
{
    assert_null(chat_tmpl_find("jinja"));
    assert_null(chat_tmpl_find(NULL));
    const char *names = chat_tmpl_names();
    const char *each[] = {"chatml", "llama2", "llama3", "mistral", "zephyr", "phi3", "gemma"};
    for (size_t i = 0; i < 7; i++) {
        assert_non_null(strstr(names, each[i]));
        assert_non_null(chat_tmpl_find(each[i]));
    }
}

static void test_detect_from_jinja(void **state)
{
    (void)state;
    static const struct {
        const char *jinja, *name;
    } cases[] = {
        {"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
         "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}",
         "chatml"},
        {"{{ '<|begin_of_text|>' }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + "
         "'<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}{% endfor %}",
         "llama3"},
        {"{% for m in messages %}{{ '<start_of_turn>' + role + '\\n' + m['content'] | trim + "
         "'<end_of_turn>\\n' }}{% endfor %}",
         "gemma"},
        {"{% for m in messages %}{{'<|' + m['role'] + '|>' + '\\n' + m['content'] + "
         "'<|end|>\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}"
         "{% endif %}<|user|>",
         "phi3"},
        {"{% for m in messages %}{% if m['role'] == 'user' %}{{ '<|user|>\\n' + m['content'] + "
         "eos_token }}{% endif %}{% endfor %}</s>",
         "zephyr"},
        {"{% if messages[0]['role'] == 'system' %}{% set system_message = '<<SYS>>\\n' + "
         "messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}{% endif %}{{ bos_token + '[INST] ' }}",
         "llama2"},
        {"{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + "
         "m['content'] + ' [/INST]' }}{% endif %}{% endfor %}",
         "mistral"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const chat_tmpl_t *t = chat_tmpl_detect(cases[i].jinja, strlen(cases[i].jinja));
        assert_non_null(t);
        assert_string_equal(chat_tmpl_name(t), cases[i].name);
    }
    const char *odd = "{% for m in messages %}{{ m['content'] }}{% endfor %}";
    assert_null(chat_tmpl_detect(odd, strlen(odd)));
    assert_null(chat_tmpl_detect(NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect_from_jinja),
        cmocka_unit_test(test_chatml),
        cmocka_unit_test(test_llama2),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_zephyr),
        cmocka_unit_test(test_phi3),
        cmocka_unit_test(test_gemma),
        cmocka_unit_test(test_lookup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
