/*
 * Set-uid front of the qmail-queue STAND-IN (README.md), for the distro matrix's qmail root.
 *
 * Why: the real qmail-queue is a compiled program installed set-uid qmailq (qmail's INSTALL), so it
 * can write /var/qmail/queue whoever calls it.  The stand-in's logic is the Python program beside
 * this file, and Linux ignores the set-uid bit on scripts; with kav4mailservers installed the
 * renamed original (queue.kav55) is run by smtpscanner as the filter's account, which must not be
 * able to write qmail's queue except through this program.  This front is what carries the bit:
 * it keeps the effective uid it was given and runs the stand-in with a fixed interpreter, a fixed
 * script and a clean environment (python3 -I: no PYTHON* variables, no user site), descriptors 0
 * and 1 untouched (message and envelope, qmail-queue(8)).
 *
 * Built inside the root by hooks/qmail-standin.sh:  cc -DQMAILHOME=... -DSTANDIN=... -o qmail-queue
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef QMAILHOME
#define QMAILHOME "/var/qmail"
#endif
#ifndef STANDIN
#define STANDIN "/usr/local/lib/qmail-standin/qmail-queue"
#endif

int main(void)
{
    /* QMAIL_STANDIN_REFUSE (tests force 31/71 with it) is the one variable passed through. */
    static char refuse[32] = "QMAIL_STANDIN_REFUSE=";
    const char *want = getenv("QMAIL_STANDIN_REFUSE");
    char *envp[4] = {"PATH=/usr/bin:/bin", "QMAILHOME=" QMAILHOME, NULL, NULL};
    char *argv[] = {"python3", "-I", STANDIN, NULL};

    if (want != NULL && strlen(want) < sizeof refuse - strlen(refuse)) {
        strcat(refuse, want);
        envp[2] = refuse;
    }
    execve("/usr/bin/python3", argv, envp);
    return 81; /* qmail-queue(8): internal bug */
}
