/* catalog.h - MESSAGE_IDs of memd's journal entries, one per MEMD_EVENT kind.
 *
 * The same IDs head the entries in systemd/memd.catalog; keep the two in
 * step.  Each is a 128-bit ID in the 32-hex-digit form journald expects after
 * "MESSAGE_ID=" (SD_MESSAGE_ID style: use as "MESSAGE_ID=" MEMD_MESSAGE_GC_STR). */
#ifndef MEMD_CATALOG_H
#define MEMD_CATALOG_H

#include <systemd/sd-id128.h>

#define MEMD_MESSAGE_ATTACH     SD_ID128_MAKE(dc,d2,8e,75,7e,fa,4f,5d,86,14,f4,ae,80,77,bc,4e)
#define MEMD_MESSAGE_ATTACH_STR SD_ID128_MAKE_STR(dc,d2,8e,75,7e,fa,4f,5d,86,14,f4,ae,80,77,bc,4e)
#define MEMD_MESSAGE_DETACH     SD_ID128_MAKE(55,1e,a7,67,6a,92,4e,00,9c,40,f1,9a,3b,0a,7a,f8)
#define MEMD_MESSAGE_DETACH_STR SD_ID128_MAKE_STR(55,1e,a7,67,6a,92,4e,00,9c,40,f1,9a,3b,0a,7a,f8)
#define MEMD_MESSAGE_GC         SD_ID128_MAKE(5c,8e,e3,4c,04,b7,48,c5,95,2a,ce,6d,b4,65,43,41)
#define MEMD_MESSAGE_GC_STR     SD_ID128_MAKE_STR(5c,8e,e3,4c,04,b7,48,c5,95,2a,ce,6d,b4,65,43,41)
#define MEMD_MESSAGE_SCVG       SD_ID128_MAKE(97,ed,e3,56,ff,3d,48,32,93,cb,f2,21,bf,c2,bd,f3)
#define MEMD_MESSAGE_SCVG_STR   SD_ID128_MAKE_STR(97,ed,e3,56,ff,3d,48,32,93,cb,f2,21,bf,c2,bd,f3)
#define MEMD_MESSAGE_POLICY     SD_ID128_MAKE(da,f2,9b,ec,8c,34,48,8d,bd,07,d1,8c,25,44,51,25)
#define MEMD_MESSAGE_POLICY_STR SD_ID128_MAKE_STR(da,f2,9b,ec,8c,34,48,8d,bd,07,d1,8c,25,44,51,25)

#endif
