/* accept_errors.c -- see accept_errors.h. */
#include "accept_errors.h"

#include <errno.h>

bool accept_error_is_temporary(int errnum)
{
    switch (errnum) {
    case ECONNABORTED:
    case EINTR:
    /* man 2 accept, "Error handling": pending network errors, for TCP/IP
     * (other systems' TCP; Linux's never returns them: accept_errors.h). */
    case ENETDOWN:
    case EPROTO:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
        return true;
    default:
        return false;
    }
}
