/** `tao-infer archs`: the supported network_archs and the images they resolve to. */
import { emit, globalFlags } from '../io.js';
import { resolveImage, supportedArchs } from '../../archs/image.js';
import { loadReferences } from '../../references.js';
import { declaredCommand } from './index.js';

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** `tao-infer archs [--json]`: valid network_archs and their resolved images. */
export function archsCommand() {
  return declaredCommand('archs')
    .action(async (_o, command) => {
      const refs = loadReferences();
      const rows = supportedArchs(refs).map((a) => {
        const img = resolveImage(refs, a);
        return { network_arch: a, image_key: img.key, image: img.image, image_source: img.source, command_shape: refs.service.container_commands[a]!.shape };
      });
      emit(globalFlags(command), rows, () => table([['NETWORK_ARCH', 'IMAGE_KEY', 'IMAGE'], ...rows.map((r) => [r.network_arch, r.image_key, r.image])]));
    });
}

