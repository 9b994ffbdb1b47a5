/*
 * config.h -- the libconfig policy loader.
 *
 * Reads one policy file (and the files it @includes, relative to the main
 * file's directory) into a new rl2_policy_t.  Every error names the file
 * and line it comes from: "path/file.conf:12: unknown key 'burts' in
 * limit".  Unknown keys are rejected, never ignored.
 */
#ifndef RL2_CONFIG_H
#define RL2_CONFIG_H

#include "ratelimit2/policy.h"
#include "ratelimit2/status.h"

/* Load the policy at path.  On success *out is owned by the caller and
 * freed with rl2_policy_free(); on failure *out is NULL and err says
 * "file:line: message". */
rl2_status_t rl2_config_load(const char *path, rl2_policy_t **out,
                             rl2_err_t *err);

/* The same from text in memory (tests, fuzzing, embedded defaults);
 * `name` stands for the file name in messages, include_dir (may be NULL)
 * is where @include looks. */
rl2_status_t rl2_config_load_string(const char *text, const char *name,
                                    const char *include_dir, rl2_policy_t **out,
                                    rl2_err_t *err);

#endif /* RL2_CONFIG_H */
