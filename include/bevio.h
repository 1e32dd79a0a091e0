/*
 * bevio: bufferevent I/O done the way HAProxy and nginx do it, where libevent 2.1's defaults cost
 * system calls on every request. For plain (not TLS) sockets:
 * - its read asks the kernel how much is waiting (ioctl FIONREAD) before every read and reads at
 *   most 4096 bytes per readiness (EVBUFFER_MAX_READ), so a 16 KiB response took four loop turns
 *   and eight calls. bevio_own_reads() gives the bufferevent's read event a callback of its own:
 *   one recv(2) into a 32 KiB reservation, and a second one only when the first came back full;
 *   the bufferevent's watermarks, read timeout and callbacks keep their meaning;
 * - its write runs only on the next loop turn, arming the write event when data is queued and
 *   disarming it once written (two epoll_ctl calls per response): bevio_flush() sends at once,
 *   and when the socket took everything the arming is cancelled before it reaches the kernel
 *   (the worker's loop batches event changes per turn).
 */
#ifndef TRIDENT_BEVIO_H
#define TRIDENT_BEVIO_H

#include <event2/bufferevent.h>
#include <stdbool.h>

/* From now on the bufferevent's socket reads are bevio's. For plain socket bufferevents whose
 * socket is connected (a read during a connect would consume a refusal that libevent's connect
 * check looks for). Reading stays enabled or disabled as it was. */
void bevio_own_reads(struct bufferevent *bev);

/* Write what the output holds now. Returns true when it is empty afterwards and the write event
 * was disarmed: the caller then does what its write callback would have done. */
bool bevio_flush(struct bufferevent *bev);

/* TLS bufferevents: libevent's own write runs when the write event fires, on the next loop turn
 * after an epoll round trip; make it run in this turn instead (the write event's callback is
 * activated, so OpenSSL's state machine stays libevent's), which also lets the arming of the
 * write event be cancelled before it reaches the kernel. */
void bevio_write_soon(struct bufferevent *bev);

/* TLS bufferevents: let OpenSSL read what the socket holds in one read(2), instead of each
 * record's header and body apart (SSL_set_read_ahead; call before the handshake). Records read
 * ahead then wait in OpenSSL's buffer, where libevent does not look: it reads on only while the
 * current record has bytes (SSL_pending), and otherwise waits for the socket. So the read event is
 * made to run whenever OpenSSL holds bytes and the input changes (installed here), and when
 * bevio_tls_kick() is called: when the handshake completes and when reading is enabled again. */
void bevio_tls_read_ahead(struct bufferevent *bev);
void bevio_tls_kick(struct bufferevent *bev);

/* TLS bufferevents whose handshake just completed: libevent keeps the write event armed from the
 * handshake even when nothing waits to go out, which costs a wake-up on a writable socket and two
 * epoll_ctl calls; disarm it now (queuing output arms it again, as libevent's own write does). */
void bevio_tls_handshake_done(struct bufferevent *bev);

#endif
