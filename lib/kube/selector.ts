// Label selectors as Kubernetes evaluates them (metav1.LabelSelector): every
// matchLabels pair and every matchExpressions requirement must hold; an empty
// selector matches everything. Pure.

export interface LabelSelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: LabelSelectorRequirement[];
}

export function labelSelectorMatches(
  selector: LabelSelector,
  labels: Readonly<Record<string, string>> | undefined,
): boolean {
  const have = labels ?? {};
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (have[k] !== v) return false;
  for (const r of selector.matchExpressions ?? []) {
    const present = Object.hasOwn(have, r.key);
    switch (r.operator) {
      case 'In':
        if (!present || !(r.values ?? []).includes(have[r.key]!)) return false;
        break;
      case 'NotIn':
        if (present && (r.values ?? []).includes(have[r.key]!)) return false;
        break;
      case 'Exists':
        if (!present) return false;
        break;
      case 'DoesNotExist':
        if (present) return false;
        break;
      default:
        // An operator the schema should have refused: match nothing rather than everything.
        return false;
    }
  }
  return true;
}
