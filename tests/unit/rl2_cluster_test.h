/*
 * rl2_cluster_test.h -- what the Redis Cluster test programs share: three
 * cluster-enabled redis-servers on loopback (rl2_redis_test.h's srv_t)
 * formed into a cluster by `redis-cli --cluster create`, and moving a slot
 * from one master to another the way `redis-cli --cluster reshard` does.
 *
 * Included once per test program, after rl2_redis_test.h.
 */
#ifndef RL2_CLUSTER_TEST_H
#define RL2_CLUSTER_TEST_H

#define NODES 3

static srv_t         node[NODES];
static redisContext *adm[NODES];
static char          node_id[NODES][48];

/* Which node serves slot (index in node[]), from node 0's CLUSTER SLOTS. */
TEST_FN int
owner_of(unsigned slot)
{
    redisReply *r = admin_cmd(adm[0], "CLUSTER SLOTS");
    int         owner = -1;

    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i];

        if ((unsigned)e->element[0]->integer <= slot
            && slot <= (unsigned)e->element[1]->integer) {
            for (int n = 0; n < NODES; n++) {
                if (e->element[2]->element[1]->integer == node[n].port) {
                    owner = n;
                }
            }
        }
    }
    freeReplyObject(r);
    assert_true(owner >= 0);
    return owner;
}

/* Finish a move: the importing node first, then the migrating one (so
 * neither sends a client back to the other), then the rest. */
TEST_FN void
slot_give(unsigned slot, int from, int to)
{
    int order[NODES] = { to, from, 3 - to - from };

    for (int n = 0; n < NODES; n++) {
        freeReplyObject(admin_cmd(adm[order[n]],
                                  "CLUSTER SETSLOT %u NODE "
                                  "%s",
                                  slot, node_id[to]));
    }
}

/* Start moving slot from node `from` to node `to` and carry its keys
 * over; with finish, give the slot to `to` on every master. */
TEST_FN void
move_slot(unsigned slot, int from, int to, int finish)
{
    redisReply *keys;

    freeReplyObject(admin_cmd(adm[to], "CLUSTER SETSLOT %u IMPORTING %s", slot,
                              node_id[from]));
    freeReplyObject(admin_cmd(adm[from], "CLUSTER SETSLOT %u MIGRATING %s",
                              slot, node_id[to]));
    keys = admin_cmd(adm[from], "CLUSTER GETKEYSINSLOT %u 1000", slot);
    for (size_t i = 0; i < keys->elements; i++) {
        freeReplyObject(admin_cmd(adm[from],
                                  "MIGRATE 127.0.0.1 %d %s 0 "
                                  "5000",
                                  node[to].port, keys->element[i]->str));
    }
    freeReplyObject(keys);
    if (finish) {
        slot_give(slot, from, to);
    }
}

/* Whether node n holds key (a node that does not serve its slot answers
 * EXISTS with -MOVED; CLUSTER GETKEYSINSLOT looks at its own keys). */
TEST_FN int
exists_on(int n, const char *key)
{
    redisReply *r = admin_cmd(adm[n], "CLUSTER GETKEYSINSLOT %u 1000",
                              rl2_redis_key_slot(key, strlen(key)));
    int         found = 0;

    for (size_t i = 0; i < r->elements; i++) {
        found |= strcmp(r->element[i]->str, key) == 0;
    }
    freeReplyObject(r);
    return found;
}

TEST_FN void
cluster_form(void)
{
    char        addr[NODES][32];
    const char *argv[8 + NODES];
    int         n = 0, status, ok = 0;
    pid_t       pid;

    argv[n++] = "redis-cli";
    argv[n++] = "--cluster";
    argv[n++] = "create";
    for (int i = 0; i < NODES; i++) {
        snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%d", node[i].port);
        argv[n++] = addr[i];
    }
    argv[n++] = "--cluster-replicas";
    argv[n++] = "0";
    argv[n++] = "--cluster-yes";
    argv[n] = NULL;
    if ((pid = fork()) == 0) {
        int fd = open("/dev/null", O_WRONLY);

        dup2(fd, 1);
        dup2(fd, 2);
        execvp("redis-cli", (char *const *)argv);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* every node must agree before the tests start */
    for (int tries = 0; tries < 200 && ok < NODES; tries++) {
        ok = 0;
        for (int i = 0; i < NODES; i++) {
            redisReply *r = admin_cmd(adm[i], "CLUSTER INFO");

            ok += strstr(r->str, "cluster_state:ok") != NULL
                  && strstr(r->str, "cluster_known_nodes:3") != NULL;
            freeReplyObject(r);
        }
        usleep(50000);
    }
    assert_int_equal(ok, NODES);
}

/* Start the three nodes (each with its own bus port, since port + 10000
 * may be taken or beyond 65535) and form the cluster. */
TEST_FN void
cluster_start(void)
{
    char bus[NODES][16];

    for (int i = 0; i < NODES; i++) {
        const char *extra[] = { "--cluster-enabled",
                                "yes",
                                "--cluster-config-file",
                                "nodes.conf",
                                "--cluster-port",
                                bus[i],
                                NULL };
        redisReply *r;
        srv_t       s;

        snprintf(bus[i], sizeof(bus[i]), "%d", free_port());
        /* started in a local: GCC's -Wrestrict takes node[i].dir and
         * node[i].sock for overlapping once srv_start is inlined */
        srv_start(&s, extra);
        node[i] = s;
        adm[i] = srv_admin(&node[i]);
        r = admin_cmd(adm[i], "CLUSTER MYID");
        snprintf(node_id[i], sizeof(node_id[i]), "%s", r->str);
        freeReplyObject(r);
    }
    cluster_form();
}

/* srv_stop removes what every server leaves; nodes.conf is a cluster
 * node's own, removed once the server is dead. */
TEST_FN void
cluster_stop(void)
{
    char path[160], dir[sizeof(node[0].dir)];

    for (int i = 0; i < NODES; i++) {
        if (adm[i] != NULL) {
            redisFree(adm[i]);
            adm[i] = NULL;
        }
        snprintf(dir, sizeof(dir), "%s", node[i].dir);
        srv_stop(&node[i]);
        if (dir[0] != '\0') {
            snprintf(path, sizeof(path), "%s/nodes.conf", dir);
            unlink(path);
            rmdir(dir);
        }
    }
}

/* A configuration seeded with node n alone (timeouts left to the caller). */
TEST_FN void
cluster_conf(rl2_redis_conf_t *conf, int n)
{
    rl2_redis_conf_init(conf);
    snprintf(conf->seeds[0], sizeof(conf->seeds[0]), "127.0.0.1:%d",
             node[n].port);
    conf->n_seeds = 1;
}

/* The connection settings the fixtures use, seeded with node 0 only. */
TEST_FN void
cluster_up_conf(rl2_redis_conf_t *conf)
{
    cluster_conf(conf, 0);
    conf->connect_timeout_ms = 1000;
    conf->command_timeout_ms = 2000;
}

/* The cluster started under the watchdog, and cluster_up_conf(). */
TEST_FN void
cluster_up(rl2_redis_conf_t *conf)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(WATCHDOG_S);
    cluster_start();
    alarm(0);
    cluster_up_conf(conf);
}

/* Group fixture: the cluster, pol, and store seeded with node 0 only. */
TEST_FN int
cluster_group_setup(void **state)
{
    rl2_redis_conf_t conf;
    rl2_err_t        err;

    (void)state;
    cluster_up(&conf);
    pol_create();
    if (rl2_store_redis_create(&conf, &store, &err) != RL2_OK) {
        fail_msg("store: %s", err.msg);
    }
    return 0;
}

TEST_FN int
cluster_group_teardown(void **state)
{
    (void)state;
    rl2_store_destroy(store);
    rl2_policy_free(pol);
    cluster_stop();
    return 0;
}

#endif /* RL2_CLUSTER_TEST_H */
