// Zircon's handle rights, with Fuchsia's names and values.
#ifndef ZIRCON_RIGHTS_H_
#define ZIRCON_RIGHTS_H_

#include <stdint.h>

#define ZX_RIGHT_NONE ((uint32_t)0u)
#define ZX_RIGHT_DUPLICATE ((uint32_t)1u << 0)
#define ZX_RIGHT_TRANSFER ((uint32_t)1u << 1)
#define ZX_RIGHT_READ ((uint32_t)1u << 2)
#define ZX_RIGHT_WRITE ((uint32_t)1u << 3)
#define ZX_RIGHT_EXECUTE ((uint32_t)1u << 4)
#define ZX_RIGHT_MAP ((uint32_t)1u << 5)
#define ZX_RIGHT_GET_PROPERTY ((uint32_t)1u << 6)
#define ZX_RIGHT_SET_PROPERTY ((uint32_t)1u << 7)
#define ZX_RIGHT_ENUMERATE ((uint32_t)1u << 8)
#define ZX_RIGHT_DESTROY ((uint32_t)1u << 9)
#define ZX_RIGHT_SET_POLICY ((uint32_t)1u << 10)
#define ZX_RIGHT_GET_POLICY ((uint32_t)1u << 11)
#define ZX_RIGHT_SIGNAL ((uint32_t)1u << 12)
#define ZX_RIGHT_SIGNAL_PEER ((uint32_t)1u << 13)
#define ZX_RIGHT_WAIT ((uint32_t)1u << 14)
#define ZX_RIGHT_INSPECT ((uint32_t)1u << 15)
#define ZX_RIGHT_MANAGE_JOB ((uint32_t)1u << 16)
#define ZX_RIGHT_MANAGE_PROCESS ((uint32_t)1u << 17)
#define ZX_RIGHT_MANAGE_THREAD ((uint32_t)1u << 18)
#define ZX_RIGHT_APPLY_PROFILE ((uint32_t)1u << 19)
#define ZX_RIGHT_MANAGE_SOCKET ((uint32_t)1u << 20)
#define ZX_RIGHT_OP_CHILDREN ((uint32_t)1u << 21)
#define ZX_RIGHT_RESIZE ((uint32_t)1u << 22)
#define ZX_RIGHT_ATTACH_VMO ((uint32_t)1u << 23)
#define ZX_RIGHT_MANAGE_VMO ((uint32_t)1u << 24)
#define ZX_RIGHT_SAME_RIGHTS ((uint32_t)1u << 31)

#define ZX_RIGHTS_BASIC (ZX_RIGHT_TRANSFER | ZX_RIGHT_DUPLICATE | ZX_RIGHT_WAIT | ZX_RIGHT_INSPECT)
#define ZX_RIGHTS_IO (ZX_RIGHT_READ | ZX_RIGHT_WRITE)
#define ZX_RIGHTS_PROPERTY (ZX_RIGHT_GET_PROPERTY | ZX_RIGHT_SET_PROPERTY)
#define ZX_RIGHTS_POLICY (ZX_RIGHT_GET_POLICY | ZX_RIGHT_SET_POLICY)

#define ZX_DEFAULT_VMO_RIGHTS \
  (ZX_RIGHTS_BASIC | ZX_RIGHTS_IO | ZX_RIGHTS_PROPERTY | ZX_RIGHT_MAP | ZX_RIGHT_SIGNAL)
#define ZX_DEFAULT_PORT_RIGHTS ((ZX_RIGHTS_BASIC & (~ZX_RIGHT_WAIT)) | ZX_RIGHTS_IO)
#define ZX_DEFAULT_VMAR_RIGHTS ((ZX_RIGHTS_BASIC & (~ZX_RIGHT_WAIT)) | ZX_RIGHT_OP_CHILDREN)
#define ZX_DEFAULT_PAGER_RIGHTS \
  (ZX_RIGHT_INSPECT | ZX_RIGHT_ATTACH_VMO | ZX_RIGHT_TRANSFER | ZX_RIGHT_MANAGE_VMO)

#endif  // ZIRCON_RIGHTS_H_
