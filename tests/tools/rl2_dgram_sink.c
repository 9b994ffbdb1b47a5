/*
 * rl2_dgram_sink.c -- a test tool standing in for syslog: binds a unix
 * datagram socket and appends every datagram it receives, as one line, to
 * a file.  Runs until killed.
 *
 * usage: rl2_dgram_sink SOCKET_PATH OUTPUT_FILE
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
    struct sockaddr_un sa;
    char               buf[4096];
    FILE              *out;
    int                fd;

    if (argc != 3 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "usage: rl2_dgram_sink SOCKET OUTPUT\n");
        return 2;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    strcpy(sa.sun_path, argv[1]);
    unlink(argv[1]);
    fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("rl2_dgram_sink: bind");
        return 1;
    }
    /* Apache children run as nobody: let them write. */
    chmod(argv[1], 0666);
    out = fopen(argv[2], "a");
    if (out == NULL) {
        perror("rl2_dgram_sink: output");
        return 1;
    }
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);

        if (n < 0) {
            continue;
        }
        buf[n] = '\0';
        fprintf(out, "%s\n", buf);
        fflush(out);
    }
}
