/*
 * fuzz_config.c -- libFuzzer target: any bytes as a policy file.  The
 * loader must either build a policy or fail with a "name:line: " message;
 * it must never crash, leak or read out of bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit2/config.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char         *text = malloc(size + 1);
    rl2_policy_t *policy = NULL;
    rl2_err_t     err;

    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    /* Includes resolve inside an empty directory: nothing to read. */
    if (rl2_config_load_string(text, "fuzz.conf", "/nonexistent-rl2-fuzz",
                               &policy, &err)
        == RL2_OK) {
        rl2_policy_free(policy);
    }
    else if (strncmp(err.msg, "fuzz.conf:", 10) != 0
             && strstr(err.msg, ":") == NULL) {
        abort(); /* every error names where it is */
    }
    free(text);
    return 0;
}
